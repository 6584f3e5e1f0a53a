//! The Lambda Extensions API (2020-01-01) as both our extensions use it: the internal one (a
//! thread of the runtime process) and the external one (its own process).
//!
//! A blocking HTTP/1.1 client on a std socket, one connection per call. The API is plain
//! HTTP on the local host, and registering is on the cold-start path (Lambda starts the
//! runtime only once every extension has registered): a tokio runtime or a TLS-ready HTTP
//! client built there would cost time and memory for nothing.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use serde_json::Value as Json;

use crate::error::Error;

const ID_HEADER: &str = "Lambda-Extension-Identifier";
/// Lambda answers at once; this only bounds a hung API. Giving up fails the extension's
/// init, so it is generous.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(5);
/// An answer larger than this is not the Extensions API's.
const MAX_ANSWER: u64 = 1 << 20;

/// The events an extension can register for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    /// Each invocation (internal extensions may have only this one).
    Invoke,
    /// The end of the execution environment or of its runtime (external extensions only).
    Shutdown,
}

impl EventType {
    fn as_str(self) -> &'static str {
        match self {
            EventType::Invoke => "INVOKE",
            EventType::Shutdown => "SHUTDOWN",
        }
    }
}

/// What `event/next` returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An invocation that ends at `deadline_ms` (Unix ms).
    Invoke {
        request_id: String,
        deadline_ms: u64,
    },
    /// The environment, or its runtime, ends: the process is killed after `deadline_ms`.
    Shutdown {
        reason: ShutdownReason,
        deadline_ms: u64,
    },
}

/// Why Lambda shuts an extension down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// The idle environment is retired.
    Spindown,
    /// An invocation timed out: the runtime was shut down (a "reset").
    Timeout,
    /// The runtime failed (crash, out of memory): also a reset.
    Failure,
    /// A reason this code does not know, as Lambda spelled it.
    Other(String),
}

impl ShutdownReason {
    /// The reason from its text; the docs spell it in upper case, older texts in lower case.
    pub fn parse(text: &str) -> Self {
        if text.eq_ignore_ascii_case("spindown") {
            ShutdownReason::Spindown
        } else if text.eq_ignore_ascii_case("timeout") {
            ShutdownReason::Timeout
        } else if text.eq_ignore_ascii_case("failure") {
            ShutdownReason::Failure
        } else {
            ShutdownReason::Other(text.to_string())
        }
    }
}

/// The Extensions API of this execution environment.
#[derive(Clone, Debug)]
pub struct ExtensionsApi {
    /// `host:port`, as `AWS_LAMBDA_RUNTIME_API` gives it (the Host header).
    host: String,
    addrs: Vec<SocketAddr>,
}

/// An extension registered with the API: what it needs to ask for events.
#[derive(Clone, Debug)]
pub struct Registration {
    api: ExtensionsApi,
    id: String,
}

impl ExtensionsApi {
    /// The API named by `AWS_LAMBDA_RUNTIME_API`; None outside Lambda (the variable unset).
    pub fn from_env() -> Result<Option<Self>, Error> {
        match std::env::var("AWS_LAMBDA_RUNTIME_API") {
            Ok(host) if !host.is_empty() => Self::new(&host).map(Some),
            _ => Ok(None),
        }
    }

    pub fn new(host: &str) -> Result<Self, Error> {
        let addrs: Vec<SocketAddr> = host
            .to_socket_addrs()
            .map_err(|e| {
                Error::Usage(format!(
                    "AWS_LAMBDA_RUNTIME_API {host:?} is not host:port: {e}"
                ))
            })?
            .collect();
        Ok(Self {
            host: host.to_string(),
            addrs,
        })
    }

    /// `POST /register` as `name` (for an external extension, its file name) for `events`.
    pub fn register(self, name: &str, events: &[EventType]) -> Result<Registration, Error> {
        let names: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
        let body = serde_json::json!({ "events": names }).to_string();
        let answer = self.call(
            "POST",
            "register",
            &[("Lambda-Extension-Name", name)],
            body.as_bytes(),
            Some(REGISTER_TIMEOUT),
        )?;
        answer.check("register")?;
        let id = answer
            .header(ID_HEADER)
            .filter(|id| !id.is_empty())
            .ok_or_else(|| Error::Comm("Extensions API register: no extension identifier".into()))?
            .to_string();
        Ok(Registration { api: self, id })
    }

    /// One request on a fresh connection. A connection that fails is `Unavailable`; an
    /// answer, whatever its status, is returned.
    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout: Option<Duration>,
    ) -> Result<Answer, Error> {
        let failed = |e: std::io::Error| Error::Unavailable(format!("Extensions API {path}: {e}"));
        let stream = self.connect().map_err(failed)?;
        stream.set_read_timeout(timeout).map_err(failed)?;
        stream.set_write_timeout(timeout).map_err(failed)?;
        let mut request = format!(
            "{method} /2020-01-01/extension/{path} HTTP/1.1\r\nHost: {}\r\n\
             Connection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        bytes.extend_from_slice(body);
        (&stream).write_all(&bytes).map_err(failed)?;
        Answer::read(BufReader::new(stream)).map_err(failed)
    }

    fn connect(&self) -> std::io::Result<TcpStream> {
        let mut last = None;
        for addr in &self.addrs {
            match TcpStream::connect_timeout(addr, REGISTER_TIMEOUT) {
                Ok(stream) => return Ok(stream),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no address to connect to")
        }))
    }
}

impl Registration {
    /// The same registration, asking `api` for its events: an environment restored from a
    /// snapshot keeps the registrations made during its INIT.
    pub fn on(&self, api: ExtensionsApi) -> Registration {
        Registration {
            api,
            id: self.id.clone(),
        }
    }

    /// Waits for the next event (no timeout: the call returns when there is one). Events of a
    /// type this code does not know are skipped, with a line on stderr. The API unreachable
    /// is `Unavailable`; an error answer is `Comm`.
    pub fn next_event(&self) -> Result<Event, Error> {
        loop {
            let answer = self
                .api
                .call("GET", "event/next", &[(ID_HEADER, &self.id)], b"", None)?;
            answer.check("event/next")?;
            match parse_event(&answer.body) {
                Ok(event) => return Ok(event),
                Err(why) => eprintln!("wandb-nexus: Extensions API event/next: {why}; ignored"),
            }
        }
    }

    /// `POST /exit/error`: tells Lambda why this extension is about to exit. Best effort: the
    /// extension exits whatever the answer.
    pub fn exit_error(&self, error_type: &str, message: &str) {
        let body = serde_json::json!({ "errorMessage": message, "errorType": error_type });
        let headers = [
            (ID_HEADER, self.id.as_str()),
            ("Lambda-Extension-Function-Error-Type", error_type),
        ];
        let _ = self.api.call(
            "POST",
            "exit/error",
            &headers,
            body.to_string().as_bytes(),
            Some(REGISTER_TIMEOUT),
        );
    }
}

/// The event in an `event/next` answer, or why it cannot be used.
fn parse_event(body: &[u8]) -> Result<Event, String> {
    let json: Json = serde_json::from_slice(body).map_err(|e| format!("bad JSON ({e})"))?;
    // Some texts show deadlineMs as a string.
    let deadline_ms = match &json["deadlineMs"] {
        Json::String(text) => text.trim().parse().unwrap_or_default(),
        number => number.as_u64().unwrap_or_default(),
    };
    let text = |key: &str| json[key].as_str().unwrap_or_default().to_string();
    match json["eventType"].as_str() {
        Some(kind) if kind.eq_ignore_ascii_case("INVOKE") => Ok(Event::Invoke {
            request_id: text("requestId"),
            deadline_ms,
        }),
        Some(kind) if kind.eq_ignore_ascii_case("SHUTDOWN") => Ok(Event::Shutdown {
            reason: ShutdownReason::parse(&text("shutdownReason")),
            deadline_ms,
        }),
        other => Err(format!("an event of unknown type {other:?}")),
    }
}

/// An HTTP answer, read whole.
#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn read(mut reader: impl BufRead) -> std::io::Result<Self> {
        let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what);
        let mut head = (&mut reader).take(64 * 1024);
        let mut line = String::new();
        head.read_line(&mut line)?;
        let status = line
            .split_whitespace()
            .nth(1)
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| bad("not an HTTP answer"))?;
        let mut headers = Vec::new();
        loop {
            line.clear();
            if head.read_line(&mut line)? == 0 {
                return Err(bad("the answer's headers end early"));
            }
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                headers.push((name.trim().to_string(), value.trim().to_string()));
            }
        }
        let mut answer = Answer {
            status,
            headers,
            body: Vec::new(),
        };
        let chunked = answer
            .header("Transfer-Encoding")
            .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
        let length = answer.header("Content-Length").and_then(|v| v.parse().ok());
        if chunked {
            answer.body = read_chunked(reader)?;
        } else if let Some(length) = length.filter(|&n: &u64| n <= MAX_ANSWER) {
            answer.body.resize(length as usize, 0);
            reader.read_exact(&mut answer.body)?;
        } else {
            // No length: the body runs to the end of the connection (we asked it closed).
            reader.take(MAX_ANSWER).read_to_end(&mut answer.body)?;
        }
        Ok(answer)
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// An error answer as `Comm`, with its body (Lambda's error JSON; never a secret).
    fn check(&self, what: &str) -> Result<(), Error> {
        if (200..300).contains(&self.status) {
            return Ok(());
        }
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(500)]);
        Err(Error::Comm(format!(
            "Extensions API {what}: HTTP {}: {}",
            self.status,
            body.trim()
        )))
    }
}

fn read_chunked(mut reader: impl BufRead) -> std::io::Result<Vec<u8>> {
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, "bad chunked body");
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        (&mut reader).take(1024).read_line(&mut line)?;
        let size = line.trim().split(';').next().unwrap_or_default();
        let size = u64::from_str_radix(size, 16).map_err(|_| bad())?;
        if size == 0 {
            return Ok(body); // trailers, if any, are not needed
        }
        if body.len() as u64 + size > MAX_ANSWER {
            return Err(bad());
        }
        let start = body.len();
        body.resize(start + size as usize, 0);
        reader.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        reader.read_exact(&mut crlf)?;
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{answer, serve};
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn events_are_parsed_and_reasons_compared_without_case() {
        let invoke = br#"{"eventType":"INVOKE","deadlineMs":676051,"requestId":"3da1",
            "invokedFunctionArn":"arn","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1"}}"#;
        assert_eq!(
            parse_event(invoke).unwrap(),
            Event::Invoke {
                request_id: "3da1".into(),
                deadline_ms: 676051
            }
        );
        for (text, reason) in [
            ("SPINDOWN", ShutdownReason::Spindown),
            ("spindown", ShutdownReason::Spindown),
            ("Timeout", ShutdownReason::Timeout),
            ("FAILURE", ShutdownReason::Failure),
            ("MAINTENANCE", ShutdownReason::Other("MAINTENANCE".into())),
        ] {
            let body = format!(
                r#"{{"eventType":"SHUTDOWN","shutdownReason":"{text}","deadlineMs":"12"}}"#
            );
            assert_eq!(
                parse_event(body.as_bytes()).unwrap(),
                Event::Shutdown {
                    reason,
                    deadline_ms: 12
                }
            );
        }
        assert!(parse_event(br#"{"eventType":"RESTORE"}"#).is_err());
        assert!(parse_event(br#"{"deadlineMs":1}"#).is_err());
        assert!(parse_event(b"not json").is_err());
    }

    #[test]
    fn answers_with_a_length_chunks_or_neither_are_read_whole() {
        let read = |raw: &[u8]| Answer::read(raw).unwrap();
        let a = read(
            b"HTTP/1.1 200 OK\r\nlambda-extension-identifier: x\r\nContent-Length: 2\r\n\r\n{}",
        );
        assert_eq!(
            (a.status, a.body.as_slice(), a.header(ID_HEADER)),
            (200, &b"{}"[..], Some("x"))
        );
        let a = read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\n{\"a\r\n2\r\n\"}\r\n0\r\n\r\n");
        assert_eq!(a.body, b"{\"a\"}");
        let a = read(b"HTTP/1.0 500 Internal\r\n\r\nto the end");
        assert_eq!((a.status, a.body.as_slice()), (500, &b"to the end"[..]));
        assert!(
            matches!(a.check("event/next"), Err(Error::Comm(m)) if m.contains("HTTP 500: to the end"))
        );
        assert!(Answer::read(&b"garbage"[..]).is_err());
        assert!(Answer::read(&b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"[..]).is_err());
    }

    #[test]
    fn bad_runtime_api_addresses_are_usage_errors() {
        assert!(ExtensionsApi::new("127.0.0.1:9001").is_ok());
        assert!(matches!(
            ExtensionsApi::new("not a host"),
            Err(Error::Usage(_))
        ));
    }

    #[test]
    fn registers_then_skips_unknown_events_until_a_known_one() {
        let (api, requests) = serve(vec![
            answer(
                "200 OK",
                "Lambda-Extension-Identifier: id-1\r\n",
                r#"{"functionName":"f"}"#,
            ),
            answer("200 OK", "", r#"{"eventType":"SOMETHING_NEW"}"#),
            answer(
                "200 OK",
                "",
                r#"{"eventType":"SHUTDOWN","shutdownReason":"timeout","deadlineMs":5}"#,
            ),
        ]);
        let registration = api.register("wandb-nexus", &[EventType::Shutdown]).unwrap();
        let register = requests.recv().unwrap();
        assert!(register.starts_with("POST /2020-01-01/extension/register HTTP/1.1\r\n"));
        assert!(register.contains("Lambda-Extension-Name: wandb-nexus\r\n"));
        assert!(register.ends_with(r#"{"events":["SHUTDOWN"]}"#));
        assert_eq!(
            registration.next_event().unwrap(),
            Event::Shutdown {
                reason: ShutdownReason::Timeout,
                deadline_ms: 5
            }
        );
        for _ in 0..2 {
            let next = requests.recv().unwrap();
            assert!(next.starts_with("GET /2020-01-01/extension/event/next HTTP/1.1\r\n"));
            assert!(next.contains("Lambda-Extension-Identifier: id-1\r\n"));
        }
    }

    #[test]
    fn a_refused_registration_or_a_gone_api_is_an_error() {
        let (api, _requests) = serve(vec![
            answer(
                "403 Forbidden",
                "",
                r#"{"errorType":"Extension.Forbidden"}"#,
            ),
            answer("200 OK", "", "{}"),
        ]);
        let refused = api.clone().register("wandb-nexus", &[EventType::Shutdown]);
        assert!(matches!(refused, Err(Error::Comm(m)) if m.contains("HTTP 403")));
        let no_id = api.register("wandb-nexus", &[EventType::Shutdown]);
        assert!(matches!(no_id, Err(Error::Comm(m)) if m.contains("no extension identifier")));

        let closed = TcpListener::bind("127.0.0.1:0").unwrap();
        let gone = ExtensionsApi::new(&closed.local_addr().unwrap().to_string()).unwrap();
        drop(closed);
        let result = gone.register("wandb-nexus", &[EventType::Shutdown]);
        assert!(matches!(result, Err(Error::Unavailable(_))));
    }
}

/// A stand-in for Lambda's Extensions API, for the tests of both extensions.
#[cfg(test)]
pub(crate) mod fake {
    use super::*;
    use std::net::TcpListener;
    use std::sync::mpsc;

    /// A one-connection-per-answer Extensions API on loopback: answers in turn (an empty
    /// answer closes the connection unanswered), and hands each request's text to the test.
    pub fn serve(answers: Vec<String>) -> (ExtensionsApi, mpsc::Receiver<String>) {
        let (host, requests) = http_server(answers);
        (ExtensionsApi::new(&host).unwrap(), requests)
    }

    /// The loopback server behind `serve`, for any HTTP client: its `host:port`.
    pub fn http_server(answers: Vec<String>) -> (String, mpsc::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let (sent, requests) = mpsc::channel();
        std::thread::spawn(move || {
            for answer in answers {
                let (stream, _) = listener.accept().unwrap();
                let mut reader = BufReader::new(&stream);
                let mut request = String::new();
                let mut length = 0;
                loop {
                    let mut line = String::new();
                    reader.read_line(&mut line).unwrap();
                    if let Some(n) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        length = n.trim().parse().unwrap();
                    }
                    request.push_str(&line);
                    if line == "\r\n" {
                        break;
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                request.push_str(&String::from_utf8(body).unwrap());
                let _ = sent.send(request);
                (&stream).write_all(answer.as_bytes()).unwrap();
            }
        });
        (host, requests)
    }

    pub fn answer(status: &str, headers: &str, body: &str) -> String {
        format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }
}
