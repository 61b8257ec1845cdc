//! Errors as values: a [`ErrorKind`], a message a person can act on, and the
//! server's status, close code and body where there is one.
//!
//! No error message ever contains a token or an API key.

use std::fmt;

/// What went wrong, coarsely. Stable: new kinds may be added, none renumbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// A caller-supplied argument is invalid (bad app id, `max_buffering` out of range, bad URL).
    InvalidArgument,
    /// No credentials are configured (set `FAL_KEY`, or `FAL_KEY_ID` and `FAL_KEY_SECRET`).
    Credentials,
    /// Authentication failed: the token endpoint refused the key, or the server answered `Unauthorized`.
    Auth,
    /// The token endpoint failed with an HTTP status other than an auth failure.
    Http,
    /// The custom token provider failed.
    TokenProvider,
    /// TCP connect or WebSocket handshake failed.
    Connect,
    /// TLS failed (e.g. an untrusted certificate).
    Tls,
    /// An operation did not finish in time (the open timeout).
    Timeout,
    /// The server reported an error (`x-fal-error`, e.g. `INTERNAL_ERROR`).
    Server,
    /// The connection closed abnormally (a close code other than 1000/1001, or the TCP connection dropped).
    Closed,
    /// A frame from the server could not be decoded.
    Decode,
    /// An input could not be encoded.
    Encode,
    /// The operation needs an open connection, or the connection was shut down.
    NotConnected,
    /// A bug or an unexpected state in this library.
    Internal,
}

impl ErrorKind {
    /// A short stable name, e.g. `"server"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidArgument => "invalid_argument",
            ErrorKind::Credentials => "credentials",
            ErrorKind::Auth => "auth",
            ErrorKind::Http => "http",
            ErrorKind::TokenProvider => "token_provider",
            ErrorKind::Connect => "connect",
            ErrorKind::Tls => "tls",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Server => "server",
            ErrorKind::Closed => "closed",
            ErrorKind::Decode => "decode",
            ErrorKind::Encode => "encode",
            ErrorKind::NotConnected => "not_connected",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error with its kind, an actionable message, and what the server said.
#[derive(Debug, Clone, PartialEq)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    status: Option<u16>,
    close_code: Option<u16>,
    body: Option<String>,
}

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            status: None,
            close_code: None,
            body: None,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    /// The same error with its message rewritten by `f`.
    pub(crate) fn map_message(mut self, f: impl FnOnce(&str) -> String) -> Self {
        self.message = f(&self.message);
        self
    }

    /// Attach an HTTP status.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Attach a WebSocket close code.
    pub fn with_close_code(mut self, code: u16) -> Self {
        self.close_code = Some(code);
        self
    }

    /// Attach the server's body (JSON text where the server sent a structured message).
    pub fn with_body(mut self, body: impl Into<String>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// The kind of error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// A message a person can act on. Never contains a token or key.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The HTTP status, for token-endpoint and handshake failures.
    pub fn status(&self) -> Option<u16> {
        self.status
    }

    /// The WebSocket close code, for abnormal closes.
    pub fn close_code(&self) -> Option<u16> {
        self.close_code
    }

    /// The server's body: the HTTP response body, or the JSON of the server's error frame.
    pub fn body(&self) -> Option<&str> {
        self.body.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.message)?;
        if let Some(s) = self.status {
            write!(f, " (HTTP {s})")?;
        }
        if let Some(c) = self.close_code {
            write!(f, " (close code {c})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_includes_status_and_code() {
        let e = Error::new(ErrorKind::Closed, "closed by server")
            .with_close_code(4001)
            .with_status(500);
        assert_eq!(e.to_string(), "closed by server (HTTP 500) (close code 4001)");
        assert_eq!(e.kind().as_str(), "closed");
    }
}
