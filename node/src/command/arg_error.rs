//! Why a command's arguments are refused: the error reply Redis 7 gives, word for word (the
//! Display is the reply's text, without RESP's leading '-').

use std::borrow::Cow;

use super::parse::{NOT_INT, SYNTAX};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArgError {
    #[error("{SYNTAX}")]
    Syntax,
    #[error("{NOT_INT}")]
    NotInteger,
    #[error("ERR wrong number of arguments for '{0}' command")]
    Arity(String),
    /// Any other refusal, in Redis's exact words.
    #[error("{0}")]
    Redis(Cow<'static, str>),
}

/// Compares the reply text (what a client sees).
impl PartialEq<&str> for ArgError {
    fn eq(&self, text: &&str) -> bool {
        match self {
            ArgError::Syntax => *text == SYNTAX,
            ArgError::NotInteger => *text == NOT_INT,
            ArgError::Arity(name) => {
                text.strip_prefix("ERR wrong number of arguments for '")
                    .and_then(|rest| rest.strip_suffix("' command"))
                    == Some(name.as_str())
            }
            ArgError::Redis(own) => own == text,
        }
    }
}

impl From<&'static str> for ArgError {
    fn from(text: &'static str) -> ArgError {
        ArgError::Redis(Cow::Borrowed(text))
    }
}

impl From<String> for ArgError {
    fn from(text: String) -> ArgError {
        ArgError::Redis(Cow::Owned(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_redis_replies() {
        assert_eq!(ArgError::Syntax.to_string(), "ERR syntax error");
        assert_eq!(
            ArgError::NotInteger.to_string(),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            ArgError::Arity("hset".into()).to_string(),
            "ERR wrong number of arguments for 'hset' command"
        );
        assert_eq!(
            ArgError::from("ERR offset is out of range").to_string(),
            "ERR offset is out of range"
        );
    }

    #[test]
    fn equals_the_text_it_shows() {
        for e in [
            ArgError::Syntax,
            ArgError::NotInteger,
            ArgError::Arity("get".into()),
            ArgError::from("ERR value is out of range, must be positive"),
        ] {
            assert_eq!(e, e.to_string().as_str());
            assert_ne!(e, "ERR something else");
        }
    }
}
