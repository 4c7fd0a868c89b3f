//! Vector clock: replica id (0..31) → LSN, as Tarantool's `struct vclock`. Component 0 counts
//! rows of local (`group_id` 1) spaces. The signature (sum of components) names xlog and snap
//! files.

use std::cmp::Ordering;
use std::fmt;
use std::str::FromStr;

use super::mp::{put_map_len, put_uint, Cursor, MpError};

pub const VCLOCK_MAX: usize = 32;

/// A set component is remembered even when its LSN is 0, as Tarantool's map bit, so
/// `{1: 0}` survives a text or MessagePack round trip.
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct Vclock {
    map: u32,
    lsn: [i64; VCLOCK_MAX],
}

impl Vclock {
    pub fn new() -> Vclock {
        Vclock::default()
    }

    pub fn get(&self, replica_id: u32) -> i64 {
        self.lsn.get(replica_id as usize).copied().unwrap_or(0)
    }

    /// Sets a component. Returns false (and changes nothing) for an id outside 0..31.
    pub fn follow(&mut self, replica_id: u32, lsn: i64) -> bool {
        match self.lsn.get_mut(replica_id as usize) {
            Some(slot) => {
                *slot = lsn;
                self.map |= 1 << replica_id;
                true
            }
            None => false,
        }
    }

    pub fn signature(&self) -> i64 {
        self.lsn.iter().fold(0i64, |a, &b| a.wrapping_add(b))
    }

    /// Set components in id order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, i64)> + '_ {
        (0..VCLOCK_MAX as u32)
            .filter(|&i| self.map & (1 << i) != 0)
            .map(|i| (i, self.lsn[i as usize]))
    }

    pub fn is_empty(&self) -> bool {
        self.map == 0
    }

    /// Partial order of vector clocks: `None` when neither is ahead of the other.
    pub fn compare(&self, other: &Vclock) -> Option<Ordering> {
        let (mut le, mut ge) = (true, true);
        for i in 0..VCLOCK_MAX {
            le &= self.lsn[i] <= other.lsn[i];
            ge &= self.lsn[i] >= other.lsn[i];
        }
        match (le, ge) {
            (true, true) => Some(Ordering::Equal),
            (true, false) => Some(Ordering::Less),
            (false, true) => Some(Ordering::Greater),
            (false, false) => None,
        }
    }

    /// `{id: lsn, ...}` as IPROTO_VCLOCK.
    pub fn encode_mp(&self, out: &mut Vec<u8>) {
        put_map_len(out, self.map.count_ones());
        for (id, lsn) in self.iter() {
            put_uint(out, id as u64);
            put_uint(out, lsn as u64);
        }
    }

    /// Decodes a map from the start of `buf`; returns the vclock and the bytes it took.
    pub fn decode_mp(buf: &[u8]) -> Result<(Vclock, usize), MpError> {
        let mut c = Cursor::new(buf);
        let n = c.read_map_len()?;
        let mut v = Vclock::new();
        for _ in 0..n {
            let at = c.pos();
            let id = c.read_uint()?;
            let lsn = c.read_uint()?;
            if id >= VCLOCK_MAX as u64 || lsn > i64::MAX as u64 {
                return Err(MpError {
                    offset: at,
                    what: "vclock component out of range",
                });
            }
            v.follow(id as u32, lsn as i64);
        }
        Ok((v, c.pos()))
    }
}

impl fmt::Display for Vclock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (n, (id, lsn)) in self.iter().enumerate() {
            if n > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{id}: {lsn}")?;
        }
        f.write_str("}")
    }
}

impl fmt::Debug for Vclock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Parse error of the text form: the byte offset where parsing stopped (as Tarantool's
/// `vclock_from_string`, which reports an offset).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VclockParseError(pub usize);

impl fmt::Display for VclockParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid vclock at offset {}", self.0)
    }
}

impl std::error::Error for VclockParseError {}

impl FromStr for Vclock {
    type Err = VclockParseError;

    /// `{1: 5, 2: 3}`; blanks anywhere between tokens; a repeated id is an error.
    fn from_str(s: &str) -> Result<Vclock, VclockParseError> {
        let b = s.as_bytes();
        let mut p = 0;
        let blanks = |p: &mut usize| {
            while *p < b.len() && (b[*p] == b' ' || b[*p] == b'\t') {
                *p += 1;
            }
        };
        let number = |p: &mut usize| -> Option<i64> {
            let start = *p;
            while *p < b.len() && b[*p].is_ascii_digit() {
                *p += 1;
            }
            s.get(start..*p)?.parse().ok()
        };
        let mut v = Vclock::new();
        blanks(&mut p);
        if b.get(p) != Some(&b'{') {
            return Err(VclockParseError(p));
        }
        p += 1;
        let mut first = true;
        loop {
            blanks(&mut p);
            if b.get(p) == Some(&b'}') {
                p += 1;
                break;
            }
            if !first {
                if b.get(p) != Some(&b',') {
                    return Err(VclockParseError(p));
                }
                p += 1;
                blanks(&mut p);
            }
            first = false;
            let at = p;
            let id = number(&mut p).ok_or(VclockParseError(at))?;
            if !(0..VCLOCK_MAX as i64).contains(&id) || v.map & (1 << id) != 0 {
                return Err(VclockParseError(at));
            }
            blanks(&mut p);
            if b.get(p) != Some(&b':') {
                return Err(VclockParseError(p));
            }
            p += 1;
            blanks(&mut p);
            let at = p;
            let lsn = number(&mut p).ok_or(VclockParseError(at))?;
            v.follow(id as u32, lsn);
        }
        blanks(&mut p);
        if p != b.len() {
            return Err(VclockParseError(p));
        }
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vc(pairs: &[(u32, i64)]) -> Vclock {
        let mut v = Vclock::new();
        for &(id, lsn) in pairs {
            assert!(v.follow(id, lsn));
        }
        v
    }

    #[test]
    fn text_form_round_trips() {
        assert_eq!(Vclock::new().to_string(), "{}");
        let v = vc(&[(1, 5), (2, 3), (0, 7)]);
        assert_eq!(v.to_string(), "{0: 7, 1: 5, 2: 3}");
        assert_eq!(v.signature(), 15);
        assert_eq!("{0: 7, 1: 5, 2: 3}".parse::<Vclock>(), Ok(v));
        assert_eq!(" {\t1:5 ,2 : 3 } ".parse::<Vclock>(), Ok(vc(&[(1, 5), (2, 3)])));
        assert_eq!("{}".parse::<Vclock>(), Ok(Vclock::new()));
        assert_eq!("{1: 0}".parse::<Vclock>().map(|v| v.to_string()), Ok("{1: 0}".into()));
        for bad in [
            "",
            "{",
            "{1}",
            "{1:}",
            "{32: 1}",
            "{1: 1, 1: 2}",
            "{1: 1} x",
            "{-1: 2}",
            "{1: 2 2: 3}",
        ] {
            assert!(bad.parse::<Vclock>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn msgpack_round_trips() {
        let v = vc(&[(1, 300), (31, 1 << 40)]);
        let mut b = Vec::new();
        v.encode_mp(&mut b);
        assert_eq!(Vclock::decode_mp(&b), Ok((v, b.len())));
        assert!(Vclock::decode_mp(&[0x81, 32, 1]).is_err());
        assert!(Vclock::decode_mp(&[0x81, 1]).is_err());
    }

    #[test]
    fn compare_is_partial() {
        let a = vc(&[(1, 5), (2, 3)]);
        assert_eq!(a.compare(&a), Some(Ordering::Equal));
        assert_eq!(a.compare(&vc(&[(1, 6), (2, 3)])), Some(Ordering::Less));
        assert_eq!(a.compare(&vc(&[(1, 5)])), Some(Ordering::Greater));
        assert_eq!(a.compare(&vc(&[(1, 6), (2, 2)])), None);
        assert!(!Vclock::new().follow(32, 1));
        assert_eq!(Vclock::new().get(40), 0);
    }
}
