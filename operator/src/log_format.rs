//! The log format of the operator, which the shard nodes it renders inherit.

/// How a process writes its log lines to stderr.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object a line (tracing-subscriber's json: timestamp, level, fields, target,
    /// span/spans).
    Json,
}

impl LogFormat {
    /// The value of `--log-format` / `RINGSHIFT_LOG_FORMAT` (the node's spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn the_nodes_value_is_what_the_operator_flag_accepts() {
        for f in LogFormat::value_variants() {
            assert_eq!(LogFormat::from_str(f.as_str(), false), Ok(*f));
        }
    }
}
