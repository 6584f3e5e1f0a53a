//! The function role's credentials: from the environment, as Lambda gives them to the
//! function and its extensions, or else from the container credentials endpoint (SnapStart
//! keeps them out of the environment, so that no copy of a snapshot holds them).

use std::fmt;
use std::time::Duration;

use serde_json::Value as Json;

use crate::api::transport;
use crate::error::Error;

/// The container endpoint answers on the host at once; this only bounds a hung one.
const ENDPOINT_TIMEOUT: Duration = Duration::from_secs(5);
/// The endpoint's address when it is given relative (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`).
const CONTAINER_HOST: &str = "http://169.254.170.2";

/// An access key, with its session token when it is temporary. `Debug` shows only the key id.
#[derive(Clone)]
pub struct Credentials {
    pub access_key_id: String,
    secret_access_key: String,
    session_token: Option<String>,
}

impl Credentials {
    pub fn new(access_key_id: String, secret_access_key: String, token: Option<String>) -> Self {
        Self {
            access_key_id,
            secret_access_key,
            session_token: token,
        }
    }

    pub fn secret_access_key(&self) -> &str {
        &self.secret_access_key
    }

    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.access_key_id)
    }
}

/// Where the credentials come from, read from the environment without any request.
#[derive(Clone)]
pub enum Source {
    Environment(Credentials),
    /// The container endpoint and the authorization token to send it.
    Container {
        uri: String,
        token: Option<String>,
    },
}

impl fmt::Debug for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment(credentials) => write!(f, "Environment({credentials:?})"),
            Self::Container { uri, .. } => write!(f, "Container({uri})"),
        }
    }
}

impl Source {
    pub fn from_env(env: &impl Fn(&str) -> Option<String>) -> Result<Self, Error> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if let (Some(id), Some(secret)) = (var("AWS_ACCESS_KEY_ID"), var("AWS_SECRET_ACCESS_KEY")) {
            return Ok(Self::Environment(Credentials::new(
                id,
                secret,
                var("AWS_SESSION_TOKEN"),
            )));
        }
        let uri = var("AWS_CONTAINER_CREDENTIALS_FULL_URI").or_else(|| {
            var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI")
                .map(|path| format!("{CONTAINER_HOST}{path}"))
        });
        let Some(uri) = uri else {
            return Err(Error::Auth(
                "no AWS credentials: neither AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY nor a \
                 container credentials endpoint (AWS_CONTAINER_CREDENTIALS_FULL_URI) is set"
                    .into(),
            ));
        };
        let token = match (
            var("AWS_CONTAINER_AUTHORIZATION_TOKEN"),
            var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"),
        ) {
            (Some(token), _) => Some(token),
            (None, Some(path)) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| {
                        Error::Auth(format!(
                            "cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {path}: {e}"
                        ))
                    })?
                    .trim()
                    .to_string(),
            ),
            (None, None) => None,
        };
        Ok(Self::Container { uri, token })
    }

    /// The credentials: at once, or asked of the container endpoint.
    pub async fn credentials(self) -> Result<Credentials, Error> {
        let (uri, token) = match self {
            Self::Environment(credentials) => return Ok(credentials),
            Self::Container { uri, token } => (uri, token),
        };
        let failed = |why: String| Error::Auth(format!("the container credentials endpoint {why}"));
        let mut request = transport::client()?.get(&uri).timeout(ENDPOINT_TIMEOUT);
        if let Some(token) = token {
            request = request.header("Authorization", token);
        }
        let response = request.send().await.map_err(|e| {
            failed(format!(
                "cannot be reached ({})",
                transport::error_chain(&e)
            ))
        })?;
        let status = response.status();
        let body = response.bytes().await.unwrap_or_default();
        if !status.is_success() {
            return Err(failed(format!("answered {status}")));
        }
        let json: Json = serde_json::from_slice(&body)
            .map_err(|_| failed("answered with something that is not JSON".into()))?;
        let field = |name: &str| json[name].as_str().map(str::to_string);
        match (field("AccessKeyId"), field("SecretAccessKey")) {
            (Some(id), Some(secret)) => Ok(Credentials::new(id, secret, field("Token"))),
            _ => Err(failed(
                "answered without AccessKeyId and SecretAccessKey".into(),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(vars: &[(&str, &str)]) -> Result<Source, Error> {
        Source::from_env(&|name: &str| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        })
    }

    #[test]
    fn the_environment_wins_then_the_container_endpoint() {
        let keys = [
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("AWS_SECRET_ACCESS_KEY", "shh"),
            ("AWS_SESSION_TOKEN", "tok"),
            (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                "http://127.0.0.1:1/creds",
            ),
        ];
        let Ok(Source::Environment(credentials)) = source(&keys) else {
            panic!("not from the environment")
        };
        assert_eq!(credentials.session_token(), Some("tok"));
        let Ok(Source::Container { uri, token }) = source(&[
            (
                "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                "/v2/credentials/x",
            ),
            ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "auth"),
        ]) else {
            panic!("not from the container endpoint")
        };
        assert_eq!(uri, "http://169.254.170.2/v2/credentials/x");
        assert_eq!(token.as_deref(), Some("auth"));
        let err = source(&[]).unwrap_err().to_string();
        assert!(err.contains("no AWS credentials"), "{err}");
    }

    #[test]
    fn debug_never_shows_the_secret_or_the_token() {
        let credentials = Credentials::new("AKID".into(), "shh-secret".into(), Some("tok".into()));
        let container = Source::Container {
            uri: "http://127.0.0.1:1/".into(),
            token: Some("tok".into()),
        };
        let shown = format!(
            "{credentials:?} {:?} {container:?}",
            Source::Environment(credentials.clone())
        );
        assert!(shown.contains("AKID"));
        assert!(
            !shown.contains("shh-secret") && !shown.contains("tok"),
            "{shown}"
        );
    }
}
