//! The console's Lua output mode (`\set output lua[,line|block]`): values as Lua
//! literals, in the shapes Tarantool 2.6's Lua serializer gives them (measured against it):
//!
//! - `nil` is `nil`, box.NULL `box.NULL`; numbers as in YAML (`inf`, `-nan`, integral
//!   values as digits); strings double-quoted with C escapes (`\t`, `\0`, `\'`, `\xHH` for
//!   any other byte that is not printable ASCII), and a string that is not printable UTF-8
//!   is written as its base64;
//! - an array is `{1, nil, 3}` (holes are `nil`); a map is `{a = 1, ["a b"] = 2, [10] = 3}`:
//!   string keys are bare unless they are a Lua keyword or hold something other than
//!   letters, digits and `_`, integer keys are bracketed unless equal to the entry's
//!   position (counted from 0), other keys are bare (`true = 1`, `1.5 = 2`) even though
//!   that is not valid Lua;
//! - a table met a second time is `{nil}`;
//! - block mode puts every item on its own line, indented by 2 per level; an empty table
//!   is `{`, an empty line, `}`.
//!
//! Map keys come sorted as in YAML (Tarantool follows its hash table's order).

use super::{format_number, Node};
use crate::modules::digest::{base64_encode, Base64Options};

const INDENT: usize = 2;

/// Lua's reserved words, which cannot be bare keys.
const KEYWORDS: &[&str] = &[
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if", "in", "local", "nil", "not", "or",
    "repeat", "return", "then", "true", "until", "while",
];

/// One value as a Lua literal; `block` is `\set output lua,block`.
pub fn value(node: &Node, block: bool) -> String {
    let mut out = String::new();
    Emitter { block, out: &mut out }.node(node, 0);
    out
}

struct Emitter<'a> {
    block: bool,
    out: &'a mut String,
}

impl Emitter<'_> {
    fn node(&mut self, node: &Node, indent: usize) {
        match node {
            Node::Nil => self.out.push_str("nil"),
            Node::Null => self.out.push_str("box.NULL"),
            Node::Bool(b) => self.out.push_str(if *b { "true" } else { "false" }),
            Node::Int(i) => self.out.push_str(&i.to_string()),
            Node::UInt(u) => self.out.push_str(&u.to_string()),
            Node::Num(n) => self.out.push_str(&format_number(*n, 14, true)),
            Node::Str(s) => quoted(self.out, s),
            Node::Seq { items, .. } => {
                let inner = self.open(indent);
                for (i, item) in items.iter().enumerate() {
                    self.separator(i, inner);
                    self.node(item, inner);
                }
                self.close(indent);
            }
            Node::Map { entries, .. } => {
                let inner = self.open(indent);
                for (i, (key, value)) in entries.iter().enumerate() {
                    self.separator(i, inner);
                    self.key(key, i, inner);
                    self.node(value, inner);
                }
                self.close(indent);
            }
            // Tarantool opens the table, finds it was already written, and writes nil.
            Node::Alias(_) => {
                let inner = self.open(indent);
                self.separator(0, inner);
                self.out.push_str("nil");
                self.close(indent);
            }
        }
    }

    fn open(&mut self, indent: usize) -> usize {
        self.out.push('{');
        if self.block {
            self.out.push('\n');
        }
        indent + INDENT
    }

    fn separator(&mut self, index: usize, indent: usize) {
        if self.block {
            if index > 0 {
                self.out.push_str(",\n");
            }
            self.out.extend(std::iter::repeat_n(' ', indent));
        } else if index > 0 {
            self.out.push_str(", ");
        }
    }

    /// In block mode the `}` goes on a line of its own at the table's indent (an empty
    /// table so gets an empty line).
    fn close(&mut self, indent: usize) {
        if self.block {
            self.out.push('\n');
            self.out.extend(std::iter::repeat_n(' ', indent));
        }
        self.out.push('}');
    }

    /// A map key and ` = `, or nothing for an integer key equal to its position.
    fn key(&mut self, key: &Node, position: usize, indent: usize) {
        match key {
            Node::Int(_) | Node::UInt(_) | Node::Num(_) => {
                let integer = match key {
                    Node::Int(i) => Some(*i as i128),
                    Node::UInt(u) => Some(*u as i128),
                    Node::Num(n) if n.fract() == 0.0 && n.abs() < 9.2e18 => Some(*n as i128),
                    _ => None,
                };
                match integer {
                    Some(k) if k == position as i128 => return,
                    Some(k) => self.out.push_str(&format!("[{k}]")),
                    None => self.node(key, indent),
                }
            }
            Node::Str(s) => {
                let bare = std::str::from_utf8(s).is_ok_and(|text| {
                    !KEYWORDS.contains(&text) && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                });
                if bare {
                    self.out.push_str(&String::from_utf8_lossy(s));
                } else {
                    self.out.push('[');
                    quoted(self.out, s);
                    self.out.push(']');
                }
            }
            other => self.node(other, indent),
        }
        self.out.push_str(" = ");
    }
}

/// A string literal; text that is not printable UTF-8 goes as its base64.
fn quoted(out: &mut String, s: &[u8]) {
    out.push('"');
    if !printable_utf8(s) {
        let encoded = base64_encode(
            s,
            Base64Options {
                nowrap: true,
                ..Base64Options::default()
            },
        );
        out.push_str(&String::from_utf8_lossy(&encoded));
        out.push('"');
        return;
    }
    for &b in s {
        match b {
            b'\'' | b'"' => {
                out.push('\\');
                out.push(b as char);
            }
            0 => out.push_str("\\0"),
            7 => out.push_str("\\a"),
            8 => out.push_str("\\b"),
            12 => out.push_str("\\f"),
            11 => out.push_str("\\v"),
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            other => out.push_str(&format!("\\x{other:02x}")),
        }
    }
    out.push('"');
}

/// Tarantool's `utf8_check_printable`: valid UTF-8 whose non-ASCII characters are
/// printable (no C1 controls, surrogates, BOM or non-characters). ASCII controls pass.
fn printable_utf8(s: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(s) else {
        return false;
    };
    text.chars().all(|c| {
        let u = c as u32;
        u < 0x80
            || ((0xA0..=0xD7FF).contains(&u) || (0xE000..=0x10FFFF).contains(&u))
                && u != 0xFEFF
                && u != 0xFFFE
                && u != 0xFFFF
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(text: &str) -> Node {
        Node::str(text)
    }

    fn seq(items: Vec<Node>) -> Node {
        Node::seq(items)
    }

    fn map(entries: Vec<(Node, Node)>) -> Node {
        Node::map(entries)
    }

    /// Each case was printed by Tarantool 2.6 in `\set output lua` (line) mode.
    #[test]
    fn line_mode_matches_tarantool() {
        let cases = [
            (seq(vec![Node::Int(1), Node::Int(2), s("a")]), r#"{1, 2, "a"}"#),
            (
                map(vec![
                    (s("a"), Node::Int(1)),
                    (s("b"), map(vec![(s("c"), s("x")), (s("d"), seq(vec![]))])),
                ]),
                r#"{a = 1, b = {c = "x", d = {}}}"#,
            ),
            (seq(vec![Node::Int(1), Node::Nil, Node::Int(3)]), "{1, nil, 3}"),
            (
                map(vec![
                    (s("key with space"), Node::Int(1)),
                    (Node::Int(-1), Node::Int(3)),
                    (Node::Int(10), Node::Int(2)),
                    (Node::Bool(true), Node::Int(4)),
                ]),
                r#"{["key with space"] = 1, [-1] = 3, [10] = 2, true = 4}"#,
            ),
            (
                map(vec![
                    (s(""), Node::Int(6)),
                    (s("a-b"), Node::Int(2)),
                    (s("and"), Node::Int(1)),
                    (s("1a"), Node::Int(4)),
                    (s("_x"), Node::Int(3)),
                    (Node::Num(1.5), Node::Int(5)),
                ]),
                r#"{ = 6, ["a-b"] = 2, ["and"] = 1, 1a = 4, _x = 3, 1.5 = 5}"#,
            ),
            (s("a\tb\0c"), r#""a\tb\0c""#),
            (s("it's"), r#""it\'s""#),
            (s("é"), r#""\xc3\xa9""#),
            (Node::Str(vec![0x80, 0xff, 1]), r#""gP8B""#),
            (Node::Str(b"\xef\xbb\xbfx".to_vec()), r#""77u/eA==""#),
            (Node::Null, "box.NULL"),
            (Node::Num(f64::INFINITY), "inf"),
            (Node::Num(123456789012345678.0), "123456789012345680"),
            (seq(vec![seq(vec![Node::Int(1)]), Node::Alias(1)]), "{{1}, {nil}}"),
            (map(vec![(Node::Int(0), s("z"))]), r#"{"z"}"#),
        ];
        for (i, (node, want)) in cases.iter().enumerate() {
            assert_eq!(value(node, false), *want, "#{i}");
        }
    }

    #[test]
    fn block_mode_matches_tarantool() {
        let cases = [
            (seq(vec![]), "{\n\n}"),
            (seq(vec![seq(vec![])]), "{\n  {\n\n  }\n}"),
            (map(vec![(s("a"), seq(vec![]))]), "{\n  a = {\n\n  }\n}"),
            (
                seq(vec![
                    Node::Int(1),
                    map(vec![(s("a"), Node::Int(1)), (s("b"), seq(vec![Node::Int(2)]))]),
                    s("x"),
                ]),
                "{\n  1,\n  {\n    a = 1,\n    b = {\n      2\n    }\n  },\n  \"x\"\n}",
            ),
            (
                seq(vec![seq(vec![Node::Int(1)]), Node::Alias(1)]),
                "{\n  {\n    1\n  },\n  {\n    nil\n  }\n}",
            ),
        ];
        for (i, (node, want)) in cases.iter().enumerate() {
            assert_eq!(value(node, true), *want, "#{i}");
        }
    }
}
