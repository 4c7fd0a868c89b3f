//! The YAML writer behind `yaml.encode` and the console, in the style Tarantool gets from
//! libyaml: block style with 2-space indentation, list items directly under a map key,
//! flow style for tables marked `seq`/`map`, lines folded at 80 columns, scalar quoting
//! chosen from what the text contains. The layout rules (indentation, where a line may
//! break, which quoting a string allows) were measured against Tarantool 2.6 output.

use std::collections::{HashMap, HashSet};

use super::{format_number, Node};

const BEST_INDENT: i64 = 2;
const BEST_WIDTH: usize = 80;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// What a string allows, in libyaml's terms.
#[derive(Debug, Default)]
struct Analysis {
    multiline: bool,
    flow_plain: bool,
    block_plain: bool,
    single_quoted: bool,
    block: bool,
}

fn is_break(c: char) -> bool {
    matches!(c, '\r' | '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

fn is_blank_or_end(c: Option<char>) -> bool {
    match c {
        None => true,
        Some(c) => c == ' ' || c == '\t' || is_break(c),
    }
}

fn is_printable(c: char) -> bool {
    let u = c as u32;
    u == 0x0A
        || (0x20..=0x7E).contains(&u)
        || (0xA0..=0xD7FF).contains(&u)
        || ((0xE000..=0xFFFD).contains(&u) && u != 0xFEFF)
}

fn analyze(text: &str) -> Analysis {
    if text.is_empty() {
        return Analysis {
            multiline: false,
            flow_plain: false,
            block_plain: true,
            single_quoted: true,
            block: false,
        };
    }
    let mut block_ind = false;
    let mut flow_ind = false;
    if (text.starts_with("---") || text.starts_with("...")) && is_blank_or_end(text[3..].chars().next()) {
        block_ind = true;
        flow_ind = true;
    }
    let (mut line_breaks, mut special) = (false, false);
    let (mut leading_space, mut leading_break, mut trailing_space, mut trailing_break) = (false, false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut prev_space, mut prev_break) = (false, false);
    let mut preceded_by_ws = true;
    let chars: Vec<char> = text.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let next = chars.get(i + 1).copied();
        let followed_by_ws = is_blank_or_end(next);
        let first = i == 0;
        let last = i + 1 == chars.len();
        if first {
            if "#,[]{}&*!|>'\"%@`".contains(c) {
                flow_ind = true;
                block_ind = true;
            }
            if c == '?' || c == ':' {
                flow_ind = true;
                if followed_by_ws {
                    block_ind = true;
                }
            }
            if c == '-' && followed_by_ws {
                flow_ind = true;
                block_ind = true;
            }
        } else {
            if ",?[]{}".contains(c) {
                flow_ind = true;
            }
            // Tarantool's libyaml lets `a:b` stay plain even as a key.
            if c == ':' && followed_by_ws {
                flow_ind = true;
                block_ind = true;
            }
            if c == '#' && preceded_by_ws {
                flow_ind = true;
                block_ind = true;
            }
        }
        if !is_printable(c) {
            special = true;
        }
        if is_break(c) {
            line_breaks = true;
        }
        if c == ' ' {
            if first {
                leading_space = true;
            }
            if last {
                trailing_space = true;
            }
            if prev_break {
                break_space = true;
            }
            prev_space = true;
            prev_break = false;
        } else if is_break(c) {
            if first {
                leading_break = true;
            }
            if last {
                trailing_break = true;
            }
            if prev_space {
                space_break = true;
            }
            prev_break = true;
            prev_space = false;
        } else {
            prev_space = false;
            prev_break = false;
        }
        preceded_by_ws = c == ' ' || c == '\t' || is_break(c);
    }
    let mut a = Analysis {
        multiline: line_breaks,
        flow_plain: true,
        block_plain: true,
        single_quoted: true,
        block: true,
    };
    if leading_space || leading_break || trailing_space || trailing_break {
        a.flow_plain = false;
        a.block_plain = false;
    }
    if trailing_space {
        a.block = false;
    }
    if break_space {
        a.flow_plain = false;
        a.block_plain = false;
        a.single_quoted = false;
    }
    if space_break || special {
        a.flow_plain = false;
        a.block_plain = false;
        a.single_quoted = false;
        a.block = false;
    }
    if line_breaks {
        a.flow_plain = false;
        a.block_plain = false;
    }
    if flow_ind {
        a.flow_plain = false;
    }
    if block_ind {
        a.block_plain = false;
    }
    a
}

/// True if this plain text would read back as something other than a string, so it must
/// be quoted: booleans, null, and what Lua's `tonumber` accepts (C's strtod without
/// `nan(...)`, plus LuaJIT's `0b` binary literals).
fn looks_like_non_string(text: &str) -> bool {
    if matches!(text, "true" | "false" | "yes" | "no" | "null" | "~") {
        return true;
    }
    if text.is_empty() || text.contains('\0') || text.contains('(') {
        return false;
    }
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if let Some(bits) = unsigned.strip_prefix("0b").or_else(|| unsigned.strip_prefix("0B")) {
        return !bits.is_empty() && bits.bytes().all(|b| b == b'0' || b == b'1');
    }
    let Ok(c) = std::ffi::CString::new(text) else {
        return false;
    };
    let mut end: *mut libc::c_char = std::ptr::null_mut();
    // Safety: `c` is a valid NUL-terminated string and `end` a valid out pointer.
    unsafe {
        libc::strtod(c.as_ptr(), &mut end);
        !end.is_null() && end.offset_from(c.as_ptr()) as usize == text.len()
    }
}

/// Tarantool writes a string that is not valid UTF-8, or that holds C1 controls or
/// non-characters, as `!!binary`.
fn needs_binary(bytes: &[u8]) -> bool {
    match std::str::from_utf8(bytes) {
        Err(_) => true,
        Ok(s) => s.chars().any(|c| {
            let u = c as u32;
            (0x80..=0x9F).contains(&u) || u == 0xFEFF || u == 0xFFFE || u == 0xFFFF
        }),
    }
}

/// A scalar about to be written: its text and the tag in front of it, if any.
struct Scalar {
    text: String,
    tag: Option<&'static str>,
    /// Non-strings (numbers, booleans, null) are always plain.
    is_string: bool,
}

fn scalar_of(node: &Node) -> Option<Scalar> {
    let plain = |text: String| {
        Some(Scalar {
            text,
            tag: None,
            is_string: false,
        })
    };
    match node {
        Node::Null | Node::Nil => plain("null".into()),
        Node::Bool(b) => plain(b.to_string()),
        Node::Int(i) => plain(i.to_string()),
        Node::UInt(u) => plain(u.to_string()),
        Node::Num(n) => plain(format_number(*n, 14, true)),
        Node::Str(bytes) => {
            if needs_binary(bytes) {
                use base64::Engine;
                Some(Scalar {
                    text: base64::engine::general_purpose::STANDARD.encode(bytes),
                    tag: Some("!!binary"),
                    is_string: false,
                })
            } else {
                Some(Scalar {
                    text: String::from_utf8_lossy(bytes).into_owned(),
                    tag: None,
                    is_string: true,
                })
            }
        }
        _ => None,
    }
}

struct Emitter<'a> {
    out: String,
    column: usize,
    indent: i64,
    indents: Vec<i64>,
    indention: bool,
    whitespace: bool,
    flow_level: usize,
    mapping_context: bool,
    simple_key_context: bool,
    anchored: &'a HashSet<usize>,
    anchor_names: HashMap<usize, usize>,
}

impl<'a> Emitter<'a> {
    fn new(anchored: &'a HashSet<usize>) -> Emitter<'a> {
        Emitter {
            out: String::new(),
            column: 0,
            indent: -1,
            indents: Vec::new(),
            indention: true,
            whitespace: true,
            flow_level: 0,
            mapping_context: false,
            simple_key_context: false,
            anchored,
            anchor_names: HashMap::new(),
        }
    }

    fn put(&mut self, c: char) {
        self.out.push(c);
        self.column += 1;
    }

    fn put_break(&mut self) {
        self.out.push('\n');
        self.column = 0;
    }

    fn write_str(&mut self, s: &str) {
        for c in s.chars() {
            self.put(c);
        }
    }

    fn indicator(&mut self, text: &str, need_ws: bool, is_ws: bool, is_indention: bool) {
        if need_ws && !self.whitespace {
            self.put(' ');
        }
        self.write_str(text);
        self.whitespace = is_ws;
        self.indention = self.indention && is_indention;
    }

    fn write_indent(&mut self) {
        let indent = self.indent.max(0) as usize;
        if !self.indention || self.column > indent || (self.column == indent && !self.whitespace) {
            self.put_break();
        }
        while self.column < indent {
            self.put(' ');
        }
        self.whitespace = true;
        self.indention = true;
    }

    fn increase_indent(&mut self, flow: bool, indentless: bool) {
        self.indents.push(self.indent);
        if self.indent < 0 {
            self.indent = if flow { BEST_INDENT } else { 0 };
        } else if !indentless {
            self.indent += BEST_INDENT;
        }
    }

    fn pop_indent(&mut self) {
        self.indent = self.indents.pop().unwrap_or(-1);
    }

    fn write_break(&mut self, c: char) {
        if c == '\n' {
            self.put_break();
        } else {
            self.out.push(c);
            self.column = 0;
        }
    }

    fn anchor(&mut self, id: usize) {
        if self.anchored.contains(&id) {
            let n = self.anchor_names.len();
            self.anchor_names.insert(id, n);
            self.indicator(&format!("&{n}"), true, false, false);
        }
    }

    fn node(&mut self, node: &Node, mapping: bool, simple_key: bool) {
        self.mapping_context = mapping;
        self.simple_key_context = simple_key;
        match node {
            Node::Alias(id) => {
                let n = self.anchor_names.get(id).copied().unwrap_or(0);
                self.indicator(&format!("*{n}"), true, false, false);
                if self.simple_key_context {
                    self.put(' ');
                }
            }
            Node::Seq { items, flow, id } => {
                self.anchor(*id);
                if self.flow_level > 0 || *flow || items.is_empty() {
                    self.flow_sequence(items);
                } else {
                    self.block_sequence(items);
                }
            }
            Node::Map { entries, flow, id } => {
                self.anchor(*id);
                if self.flow_level > 0 || *flow || entries.is_empty() {
                    self.flow_mapping(entries);
                } else {
                    self.block_mapping(entries);
                }
            }
            other => {
                if let Some(s) = scalar_of(other) {
                    self.scalar(&s);
                }
            }
        }
    }

    fn block_sequence(&mut self, items: &[Node]) {
        let indentless = self.mapping_context && !self.indention;
        self.increase_indent(false, indentless);
        for item in items {
            self.write_indent();
            self.indicator("-", true, false, true);
            self.node(item, false, false);
        }
        self.pop_indent();
    }

    fn flow_sequence(&mut self, items: &[Node]) {
        self.indicator("[", true, true, false);
        self.increase_indent(true, false);
        self.flow_level += 1;
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                self.indicator(",", false, false, false);
            }
            if self.column > BEST_WIDTH {
                self.write_indent();
            }
            self.node(item, false, false);
        }
        self.flow_level -= 1;
        self.pop_indent();
        self.indicator("]", false, false, false);
    }

    fn block_mapping(&mut self, entries: &[(Node, Node)]) {
        self.increase_indent(false, false);
        for (k, v) in entries {
            self.write_indent();
            if self.is_simple_key(k) {
                self.node(k, true, true);
                self.indicator(":", false, false, false);
            } else {
                self.indicator("?", true, false, true);
                self.node(k, true, false);
                self.write_indent();
                self.indicator(":", true, false, true);
            }
            self.node(v, true, false);
        }
        self.pop_indent();
    }

    fn flow_mapping(&mut self, entries: &[(Node, Node)]) {
        self.indicator("{", true, true, false);
        self.increase_indent(true, false);
        self.flow_level += 1;
        for (i, (k, v)) in entries.iter().enumerate() {
            if i > 0 {
                self.indicator(",", false, false, false);
            }
            if self.column > BEST_WIDTH {
                self.write_indent();
            }
            if self.is_simple_key(k) {
                self.node(k, true, true);
                self.indicator(":", false, false, false);
            } else {
                self.indicator("?", true, false, false);
                self.node(k, true, false);
                if self.column > BEST_WIDTH {
                    self.write_indent();
                }
                self.indicator(":", true, false, false);
            }
            self.node(v, true, false);
        }
        self.flow_level -= 1;
        self.pop_indent();
        self.indicator("}", false, false, false);
    }

    fn is_simple_key(&self, node: &Node) -> bool {
        match node {
            Node::Alias(_) => true,
            Node::Seq { items, .. } => items.is_empty(),
            Node::Map { entries, .. } => entries.is_empty(),
            other => match scalar_of(other) {
                Some(s) => {
                    let len = s.text.chars().count() + s.tag.map_or(0, str::len);
                    !analyze(&s.text).multiline && len <= 128
                }
                None => false,
            },
        }
    }

    fn choose_style(&self, s: &Scalar, a: &Analysis) -> Style {
        let in_flow = self.flow_level > 0;
        let mut style = if !s.is_string {
            Style::Plain
        } else if in_flow || looks_like_non_string(&s.text) {
            Style::Single
        } else if s.text.contains("\n\n") {
            Style::Literal
        } else {
            Style::Plain
        };
        if style == Style::Plain {
            if s.is_string || s.tag.is_some() {
                if ((in_flow || self.simple_key_context) && !a.flow_plain)
                    || (!in_flow && !self.simple_key_context && !a.block_plain)
                    || (s.text.is_empty() && (in_flow || self.simple_key_context))
                {
                    style = Style::Single;
                }
            } else {
                return Style::Plain;
            }
        }
        if style == Style::Single && !a.single_quoted {
            style = Style::Double;
        }
        if style == Style::Literal && (!a.block || in_flow || self.simple_key_context) {
            style = Style::Double;
        }
        style
    }

    fn scalar(&mut self, s: &Scalar) {
        let a = analyze(&s.text);
        let style = self.choose_style(s, &a);
        if let Some(tag) = s.tag {
            self.indicator(tag, true, false, false);
        }
        self.increase_indent(true, false);
        let allow_breaks = !self.simple_key_context;
        match style {
            Style::Plain => self.plain(&s.text, allow_breaks),
            Style::Single => self.single_quoted(&s.text, allow_breaks),
            Style::Double => self.double_quoted(&s.text, allow_breaks),
            Style::Literal => self.literal(&s.text),
        }
        self.pop_indent();
    }

    fn plain(&mut self, text: &str, allow_breaks: bool) {
        if !self.whitespace && (!text.is_empty() || self.flow_level > 0) {
            self.put(' ');
        }
        let chars: Vec<char> = text.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && chars.get(i + 1) != Some(&' ') {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
        }
        self.whitespace = false;
        self.indention = false;
    }

    fn single_quoted(&mut self, text: &str, allow_breaks: bool) {
        self.indicator("'", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        let (mut spaces, mut breaks) = (false, false);
        for (i, &c) in chars.iter().enumerate() {
            if c == ' ' {
                if allow_breaks
                    && !spaces
                    && self.column > BEST_WIDTH
                    && i != 0
                    && i + 1 != chars.len()
                    && chars.get(i + 1) != Some(&' ')
                {
                    self.write_indent();
                } else {
                    self.put(c);
                }
                spaces = true;
            } else if is_break(c) {
                if !breaks && c == '\n' {
                    self.put_break();
                }
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                }
                if c == '\'' {
                    self.put('\'');
                }
                self.put(c);
                self.indention = false;
                spaces = false;
                breaks = false;
            }
        }
        if breaks {
            self.write_indent();
        }
        self.indicator("'", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn double_quoted(&mut self, text: &str, allow_breaks: bool) {
        self.indicator("\"", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        let mut spaces = false;
        for (i, &c) in chars.iter().enumerate() {
            let u = c as u32;
            if !is_printable(c) || u == 0xFEFF || is_break(c) || c == '"' || c == '\\' {
                self.put('\\');
                let esc = match c {
                    '\0' => "0".to_string(),
                    '\x07' => "a".into(),
                    '\x08' => "b".into(),
                    '\t' => "t".into(),
                    '\n' => "n".into(),
                    '\x0B' => "v".into(),
                    '\x0C' => "f".into(),
                    '\r' => "r".into(),
                    '\x1B' => "e".into(),
                    '"' => "\"".into(),
                    '\\' => "\\".into(),
                    '\u{85}' => "N".into(),
                    '\u{A0}' => "_".into(),
                    '\u{2028}' => "L".into(),
                    '\u{2029}' => "P".into(),
                    _ if u <= 0xFF => format!("x{u:02X}"),
                    _ if u <= 0xFFFF => format!("u{u:04X}"),
                    _ => format!("U{u:08X}"),
                };
                self.write_str(&esc);
                spaces = false;
            } else if c == ' ' {
                if allow_breaks && !spaces && self.column > BEST_WIDTH && i != 0 && i + 1 != chars.len() {
                    self.write_indent();
                    if chars.get(i + 1) == Some(&' ') {
                        self.put('\\');
                    }
                } else {
                    self.put(c);
                }
                spaces = true;
            } else {
                self.put(c);
                spaces = false;
            }
        }
        self.indicator("\"", false, false, false);
        self.whitespace = false;
        self.indention = false;
    }

    fn literal(&mut self, text: &str) {
        self.indicator("|", true, false, false);
        let chars: Vec<char> = text.chars().collect();
        if chars.first().is_some_and(|&c| c == ' ' || is_break(c)) {
            self.indicator(&BEST_INDENT.to_string(), false, false, false);
        }
        let last_is_break = chars.last().is_some_and(|&c| is_break(c));
        if !last_is_break {
            self.indicator("-", false, false, false);
        } else if chars.len() == 1 || chars.get(chars.len().wrapping_sub(2)).is_some_and(|&c| is_break(c)) {
            self.indicator("+", false, false, false);
        }
        self.put_break();
        self.indention = true;
        self.whitespace = true;
        let mut breaks = true;
        for &c in &chars {
            if is_break(c) {
                self.write_break(c);
                self.indention = true;
                breaks = true;
            } else {
                if breaks {
                    self.write_indent();
                    breaks = false;
                }
                self.put(c);
                self.indention = false;
            }
        }
    }
}

/// One YAML document (`--- ...` to `...\n`) holding `node`, as `yaml.encode` returns it.
pub fn document(node: &Node, anchored: &HashSet<usize>) -> String {
    let mut e = Emitter::new(anchored);
    e.indicator("---", true, false, false);
    e.node(node, false, false);
    e.write_indent();
    e.indicator("...", true, false, false);
    e.write_indent();
    e.out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(node: Node) -> String {
        document(&node, &HashSet::new())
    }

    fn seq(items: Vec<Node>) -> Node {
        Node::seq(items)
    }

    fn map(entries: Vec<(Node, Node)>) -> Node {
        Node::map(entries)
    }

    #[test]
    fn scalars_are_quoted_as_tarantool_does() {
        let cases = [
            ("hello", "--- hello\n...\n"),
            ("", "---\n...\n"),
            ("yes", "--- 'yes'\n...\n"),
            ("123", "--- '123'\n...\n"),
            (" leading", "--- ' leading'\n...\n"),
            ("with: colon", "--- 'with: colon'\n...\n"),
            ("multi\nline", "--- 'multi\n\n  line'\n...\n"),
            ("tab\there", "--- \"tab\\there\"\n...\n"),
            ("a\n\nb", "--- |-\n  a\n\n  b\n...\n"),
            ("\n\n", "--- |2+\n\n\n...\n"),
            ("it's", "--- it's\n...\n"),
            ("'x", "--- '''x'\n...\n"),
            ("0x1p3", "--- '0x1p3'\n...\n"),
            ("1_000", "--- 1_000\n...\n"),
        ];
        for (text, want) in cases {
            assert_eq!(doc(Node::str(text)), want, "for {text:?}");
        }
    }

    #[test]
    fn nested_blocks_use_libyaml_indentation() {
        let inner = map(vec![(Node::str("c"), seq(vec![Node::Int(1), Node::Int(2)]))]);
        let node = seq(vec![map(vec![(Node::str("a"), map(vec![(Node::str("b"), inner)]))])]);
        assert_eq!(doc(node), "---\n- a:\n    b:\n      c:\n      - 1\n      - 2\n...\n");
        let node = seq(vec![seq(vec![Node::Int(1)]), seq(vec![])]);
        assert_eq!(doc(node), "---\n- - 1\n- []\n...\n");
    }

    #[test]
    fn flow_tables_quote_strings_and_wrap() {
        let node = Node::Seq {
            items: vec![
                Node::Int(1),
                Node::str("a"),
                Node::Seq {
                    items: vec![Node::Int(2)],
                    flow: true,
                    id: 0,
                },
            ],
            flow: true,
            id: 0,
        };
        assert_eq!(doc(seq(vec![node])), "---\n- [1, 'a', [2]]\n...\n");
        let long = Node::Seq {
            items: (1..=40).map(|i| Node::Int(i * 1000)).collect(),
            flow: true,
            id: 0,
        };
        let out = doc(seq(vec![long]));
        assert!(out.starts_with(
            "---\n- [1000, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 11000, 12000, 13000,\n  14000,"
        ));
    }
}
