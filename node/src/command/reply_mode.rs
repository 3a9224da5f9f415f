//! CLIENT REPLY ON|OFF|SKIP: whether a connection's replies are sent, with Redis 7's rules
//! (networking.c): OFF silences every reply until ON; SKIP silences the next command's reply;
//! neither OFF nor SKIP answers itself; ON answers OK. Pub/Sub confirmations and messages are
//! pushes and are sent regardless.

use crate::resp::reply;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplyMode {
    off: bool,
    /// The current command's reply is skipped.
    skip: bool,
    /// The next command's reply is skipped (set by SKIP, moved to `skip` when it ends).
    skip_next: bool,
}

impl ReplyMode {
    /// Whether the command about to run needs the careful path (its reply may be dropped, or
    /// it may change the mode).
    pub fn engaged(&self) -> bool {
        self.off || self.skip || self.skip_next
    }

    /// Whether the reply of the command that just ran is dropped.
    pub fn silenced(&self) -> bool {
        self.off || self.skip
    }

    /// Runs CLIENT REPLY `arg`, appending its reply (if any) to `out`.
    pub fn client_reply(&mut self, arg: &[u8], out: &mut Vec<u8>) {
        match arg.to_ascii_lowercase().as_slice() {
            b"on" => {
                (self.off, self.skip) = (false, false);
                reply::simple(out, "OK");
            }
            b"off" => self.off = true,
            b"skip" => {
                if !self.off {
                    self.skip_next = true;
                }
            }
            _ => reply::error(out, "ERR syntax error"),
        }
    }

    /// After every command: a SKIP's silence moves on to the next command.
    pub fn command_done(&mut self) {
        self.skip = std::mem::take(&mut self.skip_next);
    }
}

/// Commands whose replies are pushes (Redis sends them even while replies are off).
pub fn is_push(name: &[u8]) -> bool {
    ["subscribe", "psubscribe", "unsubscribe", "punsubscribe"]
        .iter()
        .any(|p| name.eq_ignore_ascii_case(p.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs commands ("CLIENT REPLY x" or any other word) and tells which replies are sent.
    fn sent(cmds: &[&str]) -> Vec<String> {
        let mut m = ReplyMode::default();
        let mut shown = Vec::new();
        for c in cmds {
            let mut out = Vec::new();
            match c.strip_prefix("CLIENT REPLY ") {
                Some(arg) => m.client_reply(arg.as_bytes(), &mut out),
                None => out.extend_from_slice(format!("+{c}\r\n").as_bytes()),
            }
            if !m.silenced() && !out.is_empty() {
                shown.push(String::from_utf8_lossy(&out).trim().to_string());
            }
            m.command_done();
        }
        shown
    }

    #[test]
    fn off_silences_until_on_and_skip_silences_one_command() {
        assert_eq!(
            sent(&["a", "CLIENT REPLY OFF", "b", "c", "CLIENT REPLY ON", "d"]),
            ["+a", "+OK", "+d"]
        );
        assert_eq!(
            sent(&["CLIENT REPLY SKIP", "a", "b"]),
            ["+b"],
            "SKIP answers nothing and drops the next reply"
        );
        assert_eq!(
            sent(&["CLIENT REPLY OFF", "CLIENT REPLY SKIP", "a"]),
            Vec::<String>::new()
        );
        // ON clears a pending skip before it answers (as redis-server 7 does).
        assert_eq!(
            sent(&["CLIENT REPLY SKIP", "CLIENT REPLY ON", "a"]),
            ["+OK", "+a"]
        );
        assert_eq!(sent(&["CLIENT REPLY maybe"]), ["-ERR syntax error"]);
    }
}
