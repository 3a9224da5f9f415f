//! Kubernetes `$(VAR)` expansion for env values, command and args.
//!
//! Same rules as the kubelet: `$(NAME)` becomes the value of NAME when it is defined and stays as
//! written when it is not; `$$` is an escaped `$`; any other `$` is kept literally.

/// Expands `$(NAME)` references in `input` using `lookup`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(inner) = after.strip_prefix('(') {
            match inner.find(')') {
                Some(end) => {
                    let name = &inner[..end];
                    match lookup(name) {
                        Some(value) => out.push_str(&value),
                        None => {
                            out.push_str("$(");
                            out.push_str(name);
                            out.push(')');
                        }
                    }
                    rest = &inner[end + 1..];
                }
                None => {
                    // An unterminated reference is literal text.
                    out.push('$');
                    out.push_str(after);
                    rest = "";
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn env() -> HashMap<String, String> {
        HashMap::from([
            ("POD_IP".to_string(), "127.0.0.12".to_string()),
            ("NAME".to_string(), "web-0".to_string()),
            ("EMPTY".to_string(), String::new()),
        ])
    }

    fn ex(s: &str) -> String {
        let env = env();
        expand(s, |k| env.get(k).cloned())
    }

    #[test]
    fn replaces_defined_variables() {
        assert_eq!(ex("--bind=$(POD_IP):6379"), "--bind=127.0.0.12:6379");
        assert_eq!(ex("$(NAME)/$(POD_IP)"), "web-0/127.0.0.12");
        assert_eq!(ex("a$(EMPTY)b"), "ab");
    }

    #[test]
    fn keeps_undefined_references() {
        assert_eq!(ex("$(MISSING) x"), "$(MISSING) x");
    }

    #[test]
    fn dollar_dollar_escapes() {
        assert_eq!(ex("$$(POD_IP)"), "$(POD_IP)");
        assert_eq!(ex("cost: $$5"), "cost: $5");
    }

    #[test]
    fn lone_and_unterminated_dollars_are_literal() {
        assert_eq!(ex("$"), "$");
        assert_eq!(ex("$HOME"), "$HOME");
        assert_eq!(ex("x $(POD_IP"), "x $(POD_IP");
        assert_eq!(ex("ünï$(NAME)cødé"), "ünïweb-0cødé");
    }

    proptest! {
        #[test]
        fn text_without_dollar_is_unchanged(s in "[^$]*") {
            prop_assert_eq!(ex(&s), s);
        }

        #[test]
        fn never_panics_and_no_lookup_means_only_escapes_change(s in ".*") {
            let out = expand(&s, |_| None);
            // Without definitions only `$$` pairs shrink, so the output is never longer.
            prop_assert!(out.len() <= s.len());
        }
    }
}
