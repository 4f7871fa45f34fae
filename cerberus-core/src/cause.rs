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

/// A cause that is only a description.
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Error for Message {}
