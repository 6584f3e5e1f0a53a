"""``Settings`` for ``init(settings=...)``, and ``login()``: where runs go and with which key."""

from __future__ import annotations

import os

from . import _core
from ._run import tag_list
from .errors import UsageError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["Settings", "login"]

_TEXT_FIELDS = (
    "mode",
    "project",
    "entity",
    "run_id",
    "run_name",
    "run_group",
    "run_job_type",
    "run_notes",
    "root_dir",
    "base_url",
    "api_key",
    "console",
)
_CONSOLE_CHOICES = ("auto", "off", "wrap", "redirect", "wrap_raw", "wrap_emu")
# Settings field -> init() argument, for the fields init() also takes.
_INIT_ARGUMENTS = {
    "mode": "mode",
    "project": "project",
    "entity": "entity",
    "run_id": "id",
    "run_name": "name",
    "run_group": "group",
    "run_job_type": "job_type",
    "run_notes": "notes",
    "run_tags": "tags",
    "root_dir": "dir",
}


class Settings:
    """Run settings, as ``wandb.Settings``: ``init(settings=Settings(project="p"))``.

    Fields left unset fall back to ``init()``'s arguments, then to ``WANDB_*`` variables. An
    unknown field is a ``UsageError`` naming it; the API key never appears in the repr.
    """

    __slots__ = (*_TEXT_FIELDS, "run_tags", "silent")

    mode: str | None
    project: str | None
    entity: str | None
    run_id: str | None
    run_name: str | None
    run_group: str | None
    run_job_type: str | None
    run_notes: str | None
    root_dir: str | None
    base_url: str | None
    api_key: str | None
    console: str | None
    run_tags: tuple[str, ...] | None
    silent: bool

    def __init__(self, **fields: Any) -> None:
        for name in self.__slots__:
            object.__setattr__(self, name, False if name == "silent" else None)
        for name, value in fields.items():
            setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in self.__slots__:
            raise UsageError(f"Settings has no field {name!r}")
        object.__setattr__(self, name, _checked(name, value))

    def update(self, settings: Settings | dict[str, Any] | None = None, **fields: Any) -> None:
        """Sets the fields given (another ``Settings``' set fields, a dict, keywords)."""
        if isinstance(settings, Settings):
            settings = settings._set_fields()
        for name, value in {**(settings or {}), **fields}.items():
            setattr(self, name, value)

    def _set_fields(self) -> dict[str, Any]:
        default = {"silent": False}
        return {
            name: getattr(self, name)
            for name in self.__slots__
            if getattr(self, name) != default.get(name)
        }

    def _init_arguments(self) -> dict[str, Any]:
        """The set fields that are also ``init()`` arguments, under their argument names."""
        return {
            argument: getattr(self, name)
            for name, argument in _INIT_ARGUMENTS.items()
            if getattr(self, name) is not None
        }

    def __repr__(self) -> str:
        shown = {k: ("<redacted>" if k == "api_key" else v) for k, v in self._set_fields().items()}
        return "Settings(" + ", ".join(f"{k}={v!r}" for k, v in shown.items()) + ")"


def _checked(name: str, value: Any) -> Any:
    if name == "silent":
        if not isinstance(value, bool):
            raise UsageError(f"Settings.silent must be a bool, not {type(value).__name__}")
        return value
    if value is None:
        return None
    if name == "run_tags":
        return tuple(tag_list(value) or ())
    if hasattr(value, "__fspath__") and name == "root_dir":
        value = os.fspath(value)
    if not isinstance(value, str):
        raise UsageError(f"Settings.{name} must be a string, not {type(value).__name__}")
    if name == "console" and value not in _CONSOLE_CHOICES:
        raise UsageError(f"Settings.console must be one of {', '.join(_CONSOLE_CHOICES)}")
    return value


# What login() was given, for the runs this process starts.
_login_key: str | None = None
_login_host: str | None = None


def login(
    key: str | None = None,
    relogin: bool | None = None,
    host: str | None = None,
    timeout: float | None = None,
    verify: bool = False,
    **_interactive: Any,
) -> bool:
    """Uses ``key`` (else the configured one: ``WANDB_API_KEY``, then netrc) for the runs this
    process starts, against ``host`` (else ``WANDB_BASE_URL``). With ``verify=True`` the key
    is checked with the server: a refused key is an ``AuthenticationError``. Outside Lambda a
    new key is also stored in ``~/.netrc`` (mode 0600), as ``wandb login`` does; on Lambda no
    file is written. Returns True once a key is configured. wandb's options for interactive
    logins (``force``, ``prompt``, ``anonymous``, ``referrer``) are accepted and have no
    effect: there is no prompt here.
    """
    unknown = set(_interactive) - {"force", "prompt", "anonymous", "referrer"}
    if unknown:
        raise UsageError(f"login() got an unexpected argument {sorted(unknown)[0]!r}")
    global _login_key, _login_host
    for name, value in (("key", key), ("host", host)):
        if value is not None and not isinstance(value, str):
            raise UsageError(f"login({name}=...) must be a string, not {type(value).__name__}")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)):
        raise UsageError(f"login(timeout=...) must be a number, not {type(timeout).__name__}")
    if not isinstance(verify, bool) or not isinstance(relogin, bool | None):
        raise UsageError("login(verify=..., relogin=...) take True or False")
    if host is not None:
        _login_host = host.rstrip("/")
    if key is None:
        key = _login_key or _configured_key()
        if key is None:
            raise UsageError("No API key configured: call login(key=...) or set WANDB_API_KEY")
    if not key.strip():
        raise UsageError("login(key=...) must not be empty")
    if verify:
        _core.verify_login(key, base_url=base_url(), timeout=timeout)
    if key != _login_key and key != os.environ.get("WANDB_API_KEY"):
        _store_in_netrc(key)
    _login_key = key
    return True


def base_url() -> str | None:
    return _login_host or os.environ.get("WANDB_BASE_URL") or None


def api_key() -> str | None:
    return _login_key


def _configured_key() -> str | None:
    return os.environ.get("WANDB_API_KEY") or _core.netrc_key(base_url())


def _on_lambda() -> bool:
    return bool(
        os.environ.get("AWS_LAMBDA_FUNCTION_NAME") or os.environ.get("AWS_LAMBDA_RUNTIME_API")
    )


def _store_in_netrc(key: str) -> None:
    """Writes the key to ``~/.netrc`` (or ``$NETRC``) for the host, as ``wandb login`` does:
    other machines' entries are kept, the file is private. Never on Lambda; a HOME that cannot
    be written is not an error (the key still serves this process)."""
    if _on_lambda():
        return
    from urllib.parse import urlsplit

    host = urlsplit(base_url() or "https://api.wandb.ai").netloc
    path = os.environ.get("NETRC") or os.path.join(os.path.expanduser("~"), ".netrc")
    try:
        with open(path) as existing:
            lines = existing.read().splitlines()
    except OSError:
        lines = []
    kept: list[str] = []
    skipping = False
    for line in lines:
        words = line.split()
        if words[:1] == ["machine"]:
            skipping = len(words) > 1 and words[1] == host
        if not skipping:
            kept.append(line)
    kept += [f"machine {host}", "  login user", f"  password {key}"]
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as netrc:
            netrc.write("\n".join(kept) + "\n")
        os.chmod(path, 0o600)
    except OSError:
        pass
