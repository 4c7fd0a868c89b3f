//! box errors raised from Rust: a code from [`errcode`](super::errcode) and a message built
//! from its template, reaching Lua as a box.error object of class `ClientError`.

use std::borrow::Cow;
use std::fmt;

use crate::runtime::errors::BoxError;

use super::errcode::ERRCODES;

/// An argument substituted into an error template (`%s`, `%u`, `%d`, ...).
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    Str(Cow<'a, str>),
    Int(i64),
}

impl From<String> for Arg<'_> {
    fn from(s: String) -> Self {
        Arg::Str(Cow::Owned(s))
    }
}

impl<'a> From<&'a str> for Arg<'a> {
    fn from(s: &'a str) -> Arg<'a> {
        Arg::Str(Cow::Borrowed(s))
    }
}

impl<'a> From<&'a String> for Arg<'a> {
    fn from(s: &'a String) -> Arg<'a> {
        Arg::Str(Cow::Borrowed(s.as_str()))
    }
}

macro_rules! int_arg {
    ($($t:ty),*) => {$(
        impl From<$t> for Arg<'_> {
            fn from(v: $t) -> Self {
                Arg::Int(v as i64)
            }
        }
    )*};
}
int_arg!(u8, u16, u32, u64, usize, i32, i64);

/// A Tarantool ClientError: `code` is the `box.error` number, `message` the formatted text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientError {
    pub code: u32,
    pub message: String,
}

impl ClientError {
    /// The error `code` with its template filled from `args`, as Tarantool's
    /// `tnt_raise(ClientError, code, ...)` does.
    pub fn new(code: u32, args: &[Arg]) -> ClientError {
        let template = ERRCODES
            .get(code as usize)
            .map(|e| e.template)
            .unwrap_or("Unknown error");
        ClientError {
            code,
            message: format_template(template, args),
        }
    }

    /// An error with a ready message (for texts that do not come from a template).
    pub fn with_message(code: u32, message: impl Into<String>) -> ClientError {
        ClientError {
            code,
            message: message.into(),
        }
    }

    pub fn into_box_error(self) -> BoxError {
        BoxError::new("ClientError", self.code, self.message)
    }

    pub fn into_lua_err(self) -> mlua::Error {
        self.into_box_error().into_lua_err()
    }
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ClientError {}

impl From<ClientError> for mlua::Error {
    fn from(e: ClientError) -> mlua::Error {
        e.into_lua_err()
    }
}

/// Shorthand: `client_error!(ER_NO_SUCH_SPACE, name)`.
#[macro_export]
macro_rules! client_error {
    ($code:expr $(, $arg:expr)* $(,)?) => {
        $crate::box_::error::ClientError::new($code, &[$($crate::box_::error::Arg::from($arg)),*])
    };
}

/// printf for the conversions Tarantool's templates use: `%s`, `%d`, `%u`, `%lld`, `%llu`,
/// `%c`, `%.*s` (whose precision is taken from the next Int argument) and `%%`.
pub fn format_template(template: &str, args: &[Arg]) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut args = args.iter();
    let mut chars = template.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut precision_from_arg = false;
        if chars.peek() == Some(&'.') {
            chars.next();
            if chars.peek() == Some(&'*') {
                chars.next();
                precision_from_arg = true;
            }
        }
        while matches!(chars.peek(), Some('l') | Some('z')) {
            chars.next();
        }
        let Some(conv) = chars.next() else {
            out.push('%');
            break;
        };
        if conv == '%' {
            out.push('%');
            continue;
        }
        let precision = if precision_from_arg {
            match args.next() {
                Some(Arg::Int(n)) => Some((*n).max(0) as usize),
                _ => None,
            }
        } else {
            None
        };
        match (conv, args.next()) {
            ('s', Some(Arg::Str(s))) => match precision {
                Some(p) => out.extend(s.chars().take(p)),
                None => out.push_str(s),
            },
            ('c', Some(Arg::Int(n))) => out.push(char::from_u32(*n as u32).unwrap_or('?')),
            ('c', Some(Arg::Str(s))) => out.push_str(s),
            (_, Some(Arg::Int(n))) => out.push_str(&n.to_string()),
            (_, Some(Arg::Str(s))) => out.push_str(s),
            (_, None) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::box_::errcode::*;

    #[test]
    fn templates_are_filled_like_printf() {
        let e = client_error!(ER_TUPLE_FOUND, "primary", "test");
        assert_eq!(e.code, 3);
        assert_eq!(
            e.message,
            "Duplicate key exists in unique index 'primary' in space 'test'"
        );
        let e = client_error!(ER_FIELD_TYPE, "1", "unsigned");
        assert_eq!(
            e.message,
            "Tuple field 1 type does not match one required by operation: expected unsigned"
        );
        assert_eq!(
            format_template("%.*s|%u%%", &[Arg::Int(3), Arg::Str("abcdef".into()), Arg::Int(7)]),
            "abc|7%"
        );
    }
}
