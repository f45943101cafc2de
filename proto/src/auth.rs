//! The shared token that lets a controller command an agent (and a client
//! use `controller serve`'s API). It travels as `authorization: Bearer ...`.

use std::sync::Arc;

use subtle::ConstantTimeEq;

/// The shared secret. Its `Debug` never shows it.
#[derive(Clone)]
pub struct Token(Arc<str>);

impl Token {
    /// A token; empty strings are not tokens.
    pub fn new(secret: &str) -> Option<Token> {
        (!secret.is_empty()).then(|| Token(secret.into()))
    }

    /// The secret, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token. Constant time: a timing difference
    /// must not tell how much of a guess was right.
    pub fn matches(&self, presented: &str) -> bool {
        bool::from(presented.as_bytes().ct_eq(self.0.as_bytes()))
    }
}

/// The credentials of an `Authorization: Bearer ...` value; the scheme is
/// case-insensitive (RFC 9110 §11.1), so `bearer` and `BEARER` are accepted.
pub fn bearer(authorization: &str) -> Option<&str> {
    let (scheme, credentials) = authorization.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| credentials.trim_start_matches(' '))
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_and_never_show() {
        let token = Token::new("s3cret").unwrap();
        assert!(!format!("{token:?}").contains("s3cret"));
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches("s3cret!"));
        assert_eq!(token.expose(), "s3cret");
        assert!(Token::new("").is_none());
    }

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer s3cret", "bearer s3cret", "BEARER s3cret", "bEaReR  s3cret"] {
            assert_eq!(bearer(v), Some("s3cret"), "{v:?}");
        }
        for v in ["Basic s3cret", "Bearers3cret", "s3cret", ""] {
            assert_eq!(bearer(v), None, "{v:?}");
        }
    }
}
