//! The live agent's `/sessions` query string, read into what to list and how to show it.
//!
//! Contract: [`SessionsQuery::parse`] reads the (already percent-decoded) pairs `limit=N` (a
//! whole number, 0 for all; [`DEFAULT_SESSIONS_LIMIT`] when absent), `client_id=PATTERN` (a
//! glob), `sort=severity|deadline` and `format=json|text`; anything else, or a value that does
//! not read, is a [`QueryError`] whose text says what was wrong and what is accepted (the agent
//! answers it with 400), never serde's own message.

use crate::sink::report::filter::Glob;
use crate::sink::report::{SessionOrder, SessionsSelection};

/// Open sessions listed by `/sessions` unless `?limit=N` says otherwise (0: all).
pub const DEFAULT_SESSIONS_LIMIT: usize = 1000;

/// How `/sessions` answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SessionsFormat {
    /// The JSON document.
    #[default]
    Json,
    /// A compact table for people (`format=text`).
    Text,
}

/// A `/sessions` query, read.
#[derive(Clone, Debug, Default)]
pub struct SessionsQuery {
    pub selection: SessionsSelection,
    pub format: SessionsFormat,
}

/// Why a `/sessions` query was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "{0}\n/sessions accepts: limit=N (a whole number; 0 for all), client_id=PATTERN (* and ? match any characters), sort=severity|deadline, format=json|text\n"
)]
pub struct QueryError(String);

impl SessionsQuery {
    /// Reads the query's pairs.
    pub fn parse(pairs: &[(String, String)]) -> Result<Self, QueryError> {
        let mut q = SessionsQuery::default();
        let mut limit = DEFAULT_SESSIONS_LIMIT;
        for (k, v) in pairs {
            match k.as_str() {
                "limit" => {
                    limit = v.trim().parse().map_err(|_| QueryError(format!("limit={v:?} is not a whole number")))?;
                }
                "client_id" => q.selection.client_id = Some(Glob::new(v)),
                "sort" => {
                    q.selection.order = match v.as_str() {
                        "severity" => SessionOrder::Severity,
                        "deadline" => SessionOrder::Deadline,
                        _ => return Err(QueryError(format!("sort={v:?} is not severity or deadline"))),
                    }
                }
                "format" => {
                    q.format = match v.as_str() {
                        "json" => SessionsFormat::Json,
                        "text" => SessionsFormat::Text,
                        _ => return Err(QueryError(format!("format={v:?} is not json or text"))),
                    }
                }
                _ => return Err(QueryError(format!("{k:?} is not a /sessions parameter"))),
            }
        }
        q.selection.limit = if limit == 0 { usize::MAX } else { limit };
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(q: &[(&str, &str)]) -> Result<SessionsQuery, QueryError> {
        SessionsQuery::parse(&q.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<Vec<_>>())
    }

    #[test]
    fn reads_each_parameter_and_says_what_is_wrong() {
        let q = parse(&[]).unwrap();
        assert_eq!(
            (q.selection.limit, q.selection.order, q.format),
            (1000, SessionOrder::Severity, SessionsFormat::Json)
        );
        let q = parse(&[("limit", "0"), ("sort", "deadline"), ("format", "text"), ("client_id", "dev-*")]).unwrap();
        assert_eq!(
            (q.selection.limit, q.selection.order, q.format),
            (usize::MAX, SessionOrder::Deadline, SessionsFormat::Text)
        );
        assert_eq!(q.selection.client_id, Some(Glob::new("dev-*")));
        let e = parse(&[("limit", "abc")]).unwrap_err().to_string();
        assert!(e.starts_with("limit=\"abc\" is not a whole number\n/sessions accepts: limit=N"), "{e}");
        assert!(parse(&[("limit", "-1")]).is_err());
        assert!(parse(&[("sort", "x")]).unwrap_err().to_string().contains("severity or deadline"));
        assert!(parse(&[("format", "xml")]).is_err());
        assert!(parse(&[("limt", "5")]).unwrap_err().to_string().starts_with("\"limt\" is not a /sessions parameter"));
    }
}
