//! The controller's errors, each with the exit code a user or script sees.

/// Why the controller could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A flag or value is wrong: exit code 2, like other command-line tools.
    #[error("{0}")]
    Usage(String),
    /// An agent could not be reached or used: exit code 1.
    #[error("{0}")]
    Agent(String),
    /// Anything else that stopped the run: exit code 1.
    #[error("{0}")]
    Other(String),
}

impl Error {
    /// A usage error.
    pub fn usage(msg: impl Into<String>) -> Error {
        Error::Usage(msg.into())
    }

    /// An agent error.
    pub fn agent(msg: impl Into<String>) -> Error {
        Error::Agent(msg.into())
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Usage(_) => 2,
            Error::Agent(_) | Error::Other(_) => 1,
        }
    }
}
