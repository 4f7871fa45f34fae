//! What made a backend fail, kept as an error's source.

use std::error::Error;
use std::fmt;
use std::sync::Arc;

/// What made a backend fail (a database's or Redis's own error), kept as the source of the error
/// that carries it, so a caller can walk the chain; shared, so the errors that carry it stay
/// `Clone`.
///
/// ```
/// use std::error::Error;
/// use cerberus_core::{Cause, store::StoreError};
///
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
/// let error = StoreError::Unavailable(Cause::new(io));
/// assert_eq!(error.to_string(), "storage unavailable: connection refused");
/// assert_eq!(error.source().unwrap().to_string(), "connection refused");
/// ```
#[derive(Clone)]
pub struct Cause(Arc<dyn Error + Send + Sync>);

impl Cause {
    /// The cause `error`.
    pub fn new(error: impl Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }

    /// A cause known only by what it says (a poisoned lock, a value that does not parse).
    pub fn message(text: impl Into<String>) -> Self {
        Self(Arc::new(Message(text.into())))
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&*self.0, f)
    }
}

impl Error for Cause {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.0.source()
    }
}

/// `error` and each of its causes after it, `outer: middle: inner`, each said once (an error that
/// repeats its cause in its own message does not get it twice): what a log line or a reason shows.
///
/// ```
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
/// let error = cerberus_core::store::StoreError::Unavailable(cerberus_core::Cause::new(io));
/// assert_eq!(cerberus_core::with_causes(&error), "storage unavailable: connection refused");
/// ```
pub fn with_causes(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(error) = cause {
        let next = error.to_string();
        if !text.ends_with(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        cause = error.source();
    }
    text
}

/// A cause that is only a description.
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Message {}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapping(&'static str, std::io::Error);

    impl fmt::Display for Wrapping {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl Error for Wrapping {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn each_cause_is_said_once() {
        let inner = || std::io::Error::other("inner");
        assert_eq!(with_causes(&Wrapping("outer", inner())), "outer: inner");
        assert_eq!(
            with_causes(&Wrapping("outer: inner", inner())),
            "outer: inner",
            "a message that repeats its cause"
        );
        assert_eq!(with_causes(&inner()), "inner");
    }
}
