//! Crash durability of `box` as a process sees it: acknowledged commits survive `kill -9`,
//! a torn tail of the last xlog is cut at start-up, damage inside an xlog stops start-up
//! unless `force_recovery`. The Lua helpers are in `tests/box/` and run unchanged on node
//! and on real Tarantool 2.6:
//!
//! ```text
//! cargo test --test box_crash                              # node (the debug build)
//! BOX_TEST_BINARY=tarantool cargo test --test box_crash    # the same tests on Tarantool
//! ```
//!
//! Checks on the wording of messages are node-only; everything else must hold for both.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The runtime under test: node, or whatever `BOX_TEST_BINARY` names (e.g. `tarantool`).
fn binary() -> String {
    std::env::var("BOX_TEST_BINARY").unwrap_or_else(|_| env!("CARGO_BIN_EXE_node").to_string())
}

/// Message wording is only checked on node; Tarantool's texts differ.
fn is_node() -> bool {
    !binary().contains("tarantool")
}

fn script(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/box").join(name);
    path.to_str().expect("utf-8 script path").to_string()
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A temporary directory, removed on drop unless the test is failing (then it is kept and
/// its path printed, to look at the files).
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("box-crash-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    fn sub(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("box_crash: keeping {} for inspection", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// What a finished helper process left.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

impl Run {
    fn describe(&self) -> String {
        format!(
            "status: {}\nstdout:\n{}\nstderr:\n{}",
            self.status,
            tail(&self.stdout),
            tail(&self.stderr)
        )
    }
}

/// The last 40 lines of a long output, for failure messages.
fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    let from = lines.len().saturating_sub(40);
    lines[from..].join("\n")
}

fn reader<R: Read + Send + 'static>(mut r: R) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Runs `<binary> <script> <args>` to completion (both pipes drained while it runs), killing
/// it and failing the test if it takes longer than `limit`.
fn run(script_name: &str, args: &[&str], limit: Duration) -> Run {
    let mut child = Command::new(binary())
        .arg(script(script_name))
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary()));
    let out = reader(child.stdout.take().expect("stdout pipe"));
    let err = reader(child.stderr.take().expect("stderr pipe"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let stdout = String::from_utf8_lossy(&out.join().expect("stdout reader")).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().expect("stderr reader")).into_owned();
    match status {
        Some(status) => Run { status, stdout, stderr },
        None => panic!(
            "{script_name} {args:?} did not exit within {limit:?}\nstdout:\n{}\nstderr:\n{}",
            tail(&stdout),
            tail(&stderr)
        ),
    }
}

fn copy_dir(from: &Path, to: &Path) {
    let _ = fs::remove_dir_all(to);
    fs::create_dir_all(to).expect("copy target dir");
    for entry in fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        fs::copy(entry.path(), to.join(entry.file_name())).expect("copy file");
    }
}

// ---------------------------------------------------------------------------------------
// kill -9 while 50 fibers commit

/// `checked <n> missing <m> stale <s> bad <b> total <len>`, check_keys.lua's summary line.
fn parse_summary(run: &Run) -> Option<[u64; 5]> {
    let line = run.stdout.lines().rev().find(|l| l.starts_with("checked "))?;
    let w: Vec<&str> = line.split_whitespace().collect();
    if w.len() != 10 || w[2] != "missing" || w[4] != "stale" || w[6] != "bad" || w[8] != "total" {
        return None;
    }
    Some([
        w[1].parse().ok()?,
        w[3].parse().ok()?,
        w[5].parse().ok()?,
        w[7].parse().ok()?,
        w[9].parse().ok()?,
    ])
}

/// Writes `<key> <v>` lines: the newest acknowledged version of every key.
fn write_acks(acked: &BTreeMap<u64, u64>, path: &Path) {
    let mut text = String::new();
    for (k, v) in acked {
        text.push_str(&format!("{k} {v}\n"));
    }
    fs::write(path, text).expect("acks file written");
}

/// One writer run: start crash_writer.lua on `db`, let it commit for `run_for` after it said
/// `started`, SIGKILL it, and return every `(key, version)` it acknowledged (whole lines only).
fn write_and_kill(db: &Path, mode: &str, round: u64, run_for: Duration, stderr_file: &Path) -> Vec<(u64, u64)> {
    let err = fs::File::create(stderr_file).expect("stderr file");
    let mut child: Child = Command::new(binary())
        .arg(script("crash_writer.lua"))
        .args([path_str(db), mode, &round.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(err))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary()));
    let stdout = child.stdout.take().expect("stdout pipe");
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    let lines = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut line = Vec::new();
            match r.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => break,
                // A piece without its newline would be a torn write; it was not acknowledged.
                Ok(_) if line.last() != Some(&b'\n') => break,
                Ok(_) => {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            }
        }
    });
    let stderr_text = || fs::read_to_string(stderr_file).unwrap_or_default();

    // Wait for `started` (box.cfg done: recovery of everything before succeeded).
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut received: Vec<Vec<u8>> = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(20)) {
            Ok(line) => {
                let is_started = line == b"started\n";
                received.push(line);
                if is_started {
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                let status = child.wait().expect("wait");
                panic!(
                    "round {round}: the writer exited before `started` ({status}):\n{}",
                    tail(&stderr_text())
                );
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "round {round}: the writer did not start within 30 s:\n{}",
                tail(&stderr_text())
            );
        }
    }
    std::thread::sleep(run_for);
    if let Some(status) = child.try_wait().expect("try_wait") {
        panic!(
            "round {round}: the writer exited on its own ({status}):\n{}",
            tail(&stderr_text())
        );
    }
    child.kill().expect("SIGKILL");
    child.wait().expect("wait after SIGKILL");
    lines.join().expect("stdout reader");
    received.extend(rx.try_iter());

    let stderr = stderr_text();
    assert!(
        !stderr.contains("snapshot failed"),
        "round {round}: box.snapshot() failed in the writer:\n{}",
        tail(&stderr)
    );
    let mut acks = Vec::new();
    for line in received {
        let text = String::from_utf8_lossy(&line);
        let text = text.trim_end();
        if text == "started" {
            continue;
        }
        let parsed = text
            .split_once(' ')
            .and_then(|(k, v)| Some((k.parse::<u64>().ok()?, v.parse::<u64>().ok()?)));
        match parsed {
            Some(ack) => acks.push(ack),
            None => panic!("round {round}: unexpected writer output line {text:?}"),
        }
    }
    acks
}

fn kill_nine_rounds(mode: &str) {
    const ROUNDS: u64 = 20;
    let started = Instant::now();
    let tmp = TempDir::new(&format!("kill9-{mode}"));
    let db = tmp.sub("db");
    fs::create_dir_all(&db).expect("db dir");
    let acks_file = tmp.sub("acks.txt");
    // key -> newest acknowledged version
    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut commits = 0usize;
    let mut snapshots_seen: BTreeSet<String> = BTreeSet::new();
    for round in 1..=ROUNDS {
        // 0.3 .. 1.0 s of writing, spread over the rounds.
        let run_for = Duration::from_millis(300 + (round * 373) % 700);
        let acks = write_and_kill(&db, mode, round, run_for, &tmp.sub(&format!("writer-{round}.err")));
        assert!(
            !acks.is_empty(),
            "round {round}: the writer acknowledged nothing in {run_for:?}"
        );
        commits += acks.len();
        for (k, v) in acks {
            let newest = acked.entry(k).or_insert(v);
            assert!(
                *newest <= v,
                "round {round}: key {k} acknowledged at version {v} after {newest}"
            );
            *newest = v;
        }
        for entry in fs::read_dir(&db).expect("read db dir") {
            let name = entry.expect("dir entry").file_name().to_string_lossy().into_owned();
            if name.ends_with(".snap") {
                snapshots_seen.insert(name);
            }
        }

        write_acks(&acked, &acks_file);
        let check = run(
            "check_keys.lua",
            &[path_str(&db), "check", path_str(&acks_file)],
            Duration::from_secs(60),
        );
        assert!(
            check.status.success(),
            "round {round}: restart after kill -9 failed\n{}",
            check.describe()
        );
        let Some([n, missing, stale, bad, total]) = parse_summary(&check) else {
            panic!(
                "round {round}: no summary line from check_keys.lua\n{}",
                check.describe()
            );
        };
        assert_eq!(
            n,
            acked.len() as u64,
            "round {round}: checker read a different number of keys"
        );
        assert!(
            missing == 0 && stale == 0 && bad == 0,
            "round {round} (wal_mode {mode}, killed after {run_for:?}): of {n} acknowledged keys \
             {missing} lost, {stale} older than acknowledged, {bad} damaged\n{}",
            check.describe()
        );
        // Each fiber has at most one write in flight when killed, which may have committed
        // without its acknowledgement: a new key that the test does not know about.
        assert!(
            total >= n && total <= n + 50 * round,
            "round {round}: the space holds {total} keys for {n} acknowledged"
        );
    }
    // Snapshots were taken under load (more than the bootstrap one), so recovery went
    // through snapshot + xlog rotation, not just one xlog.
    assert!(
        snapshots_seen.len() > 2,
        "box.snapshot() never produced new snapshot files: {snapshots_seen:?}"
    );
    eprintln!(
        "kill -9 ({mode}): {ROUNDS} rounds, {commits} acknowledged commits, newest versions of {} keys all \
         present, {} distinct snapshots seen, {:?}",
        acked.len(),
        snapshots_seen.len(),
        started.elapsed()
    );
}

#[test]
fn kill_nine_keeps_acknowledged_commits_wal_write() {
    kill_nine_rounds("write");
}

#[test]
fn kill_nine_keeps_acknowledged_commits_wal_fsync() {
    kill_nine_rounds("fsync");
}

// ---------------------------------------------------------------------------------------
// Damaged xlog files

/// Blocks of an xlog file as `(start, end)` byte ranges: after the text meta block (ended
/// by an empty line), each block is the fixed header `d5 ba 0b ab` (`d5 ba 0b ba` when
/// compressed), the data length as a MessagePack unsigned, the rest padded to 19 bytes,
/// then the data. Stops at the end-of-file marker `d5 10 ad ed` or the end of the data.
fn xlog_blocks(data: &[u8], name: &str) -> Vec<(usize, usize)> {
    let meta_end = data
        .windows(2)
        .position(|w| w == b"\n\n")
        .unwrap_or_else(|| panic!("{name}: no end of the meta block"))
        + 2;
    let mut blocks = Vec::new();
    let mut pos = meta_end;
    while pos < data.len() {
        let rest = &data[pos..];
        if rest.starts_with(&[0xd5, 0x10, 0xad, 0xed]) {
            assert_eq!(rest.len(), 4, "{name}: data after the end-of-file marker at {pos}");
            break;
        }
        assert!(
            rest.len() >= 19 && rest[..3] == [0xd5, 0xba, 0x0b] && (rest[3] == 0xab || rest[3] == 0xba),
            "{name}: no block header at offset {pos}"
        );
        let len = match rest[4] {
            b @ 0x00..=0x7f => b as usize,
            0xcc => rest[5] as usize,
            0xcd => u16::from_be_bytes([rest[5], rest[6]]) as usize,
            0xce => u32::from_be_bytes([rest[5], rest[6], rest[7], rest[8]]) as usize,
            other => panic!("{name}: block at {pos}: unexpected length byte {other:#x}"),
        };
        let end = pos + 19 + len;
        assert!(
            end <= data.len(),
            "{name}: block at {pos} runs past the end of the file"
        );
        blocks.push((pos, end));
        pos = end;
    }
    blocks
}

/// After a clean exit: drops the trailing xlog files that hold no block (both runtimes open
/// an empty one at shutdown; a crash in the middle of the last write leaves no newer file)
/// and returns the newest remaining xlog with its blocks.
fn last_xlog(db: &Path) -> (PathBuf, Vec<(usize, usize)>) {
    let mut xlogs: Vec<PathBuf> = fs::read_dir(db)
        .expect("read db dir")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "xlog"))
        .collect();
    xlogs.sort();
    while let Some(path) = xlogs.pop() {
        let name = path.display().to_string();
        let data = fs::read(&path).expect("read xlog");
        let blocks = xlog_blocks(&data, &name);
        if blocks.is_empty() {
            fs::remove_file(&path).expect("remove empty xlog");
            continue;
        }
        return (path, blocks);
    }
    panic!("no xlog with data in {}", db.display());
}

fn file_name(p: &Path) -> String {
    p.file_name().expect("file name").to_string_lossy().into_owned()
}

/// Keys of transactions `txns` as txn_writer.lua writes them.
fn txn_keys(txns: impl IntoIterator<Item = u64>) -> BTreeSet<u64> {
    txns.into_iter()
        .flat_map(|i| (1..=3).map(move |j| i * 10 + j))
        .collect()
}

fn listed_keys(run: &Run) -> BTreeSet<u64> {
    run.stdout
        .lines()
        .map(|l| {
            l.trim()
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("check_keys.lua printed {l:?}"))
        })
        .collect()
}

fn write_txns(db: &Path, n: u64, first: u64) {
    let r = run(
        "txn_writer.lua",
        &[path_str(db), &n.to_string(), &first.to_string()],
        Duration::from_secs(30),
    );
    assert!(
        r.status.success() && r.stdout == "done\n",
        "txn_writer.lua failed\n{}",
        r.describe()
    );
}

fn list(db: &Path, force: bool) -> Run {
    let mut args = vec![path_str(db), "list"];
    if force {
        args.push("force");
    }
    run("check_keys.lua", &args, Duration::from_secs(30))
}

#[test]
fn torn_tail_of_the_last_xlog_is_cut() {
    const N: u64 = 30;
    let tmp = TempDir::new("torn");
    let pristine = tmp.sub("pristine");
    fs::create_dir_all(&pristine).expect("db dir");
    write_txns(&pristine, N, 1);
    let (xlog, blocks) = last_xlog(&pristine);
    let name = file_name(&xlog);
    let file_len = fs::metadata(&xlog).expect("xlog size").len() as usize;
    let (start, end) = *blocks.last().expect("blocks");
    assert!(
        blocks.len() as u64 >= N,
        "{name}: {} blocks for {N} transactions",
        blocks.len()
    );
    let all_but_last = txn_keys(1..N);
    let all = txn_keys(1..=N);

    // A few bytes cut off inside the last transaction: it is gone, the rest is there, a
    // warning names the file, and the database goes on working across restarts.
    let db = tmp.sub("db");
    copy_dir(&pristine, &db);
    let cut = end - 5;
    fs::OpenOptions::new()
        .write(true)
        .open(db.join(&name))
        .and_then(|f| f.set_len(cut as u64))
        .expect("truncate");
    let r = list(&db, false);
    assert!(
        r.status.success(),
        "start-up after a torn tail (cut at {cut}) failed\n{}",
        r.describe()
    );
    assert_eq!(
        listed_keys(&r),
        all_but_last,
        "cut at {cut} of {name}\n{}",
        r.describe()
    );
    assert!(
        r.stderr.contains(&name),
        "no warning naming {name} after a torn tail\n{}",
        r.describe()
    );
    write_txns(&db, 5, N);
    let r = list(&db, false);
    assert!(
        r.status.success(),
        "second start-up after a torn tail failed\n{}",
        r.describe()
    );
    assert_eq!(
        listed_keys(&r),
        txn_keys(1..N + 5),
        "after writing on top of a cut tail\n{}",
        r.describe()
    );

    // Every cut from the start of the last block to the end of the file starts up.
    for cut in start..file_len {
        copy_dir(&pristine, &db);
        fs::OpenOptions::new()
            .write(true)
            .open(db.join(&name))
            .and_then(|f| f.set_len(cut as u64))
            .expect("truncate");
        let r = list(&db, false);
        assert!(
            r.status.success(),
            "start-up with {name} cut at {cut} (last block {start}..{end}) failed\n{}",
            r.describe()
        );
        let expected = if cut < end { &all_but_last } else { &all };
        assert_eq!(
            &listed_keys(&r),
            expected,
            "{name} cut at {cut} (last block {start}..{end})"
        );
        if cut > start && cut < end {
            assert!(
                r.stderr.contains(&name),
                "no warning naming {name} for a cut at {cut}\n{}",
                r.describe()
            );
        }
    }
}

#[test]
fn bit_flip_inside_an_xlog_stops_start_up() {
    const N: u64 = 30;
    let tmp = TempDir::new("flip");
    let db = tmp.sub("db");
    fs::create_dir_all(&db).expect("db dir");
    write_txns(&db, N, 1);
    let (xlog, blocks) = last_xlog(&db);
    let name = file_name(&xlog);
    assert!(
        blocks.len() as u64 >= N,
        "{name}: {} blocks for {N} transactions",
        blocks.len()
    );
    // The last N blocks are the transactions 1..=N (one per block); damage one in the middle.
    let first_txn_block = blocks.len() - N as usize;
    let damaged_txn = N / 2;
    let (start, end) = blocks[first_txn_block + damaged_txn as usize - 1];
    let at = start + 19 + (end - start - 19) / 2;
    let mut data = fs::read(&xlog).expect("read xlog");
    data[at] ^= 0x10;
    fs::write(&xlog, &data).expect("write xlog");

    let r = list(&db, false);
    assert!(
        !r.status.success(),
        "start-up with a bit flipped at {at} of {name} (block {start}..{end}) succeeded\n{}",
        r.describe()
    );
    assert!(r.stdout.is_empty(), "keys listed despite the damage\n{}", r.describe());
    assert!(
        r.stderr.contains(&name),
        "the error does not name {name}\n{}",
        r.describe()
    );
    if is_node() {
        let offset = r
            .stderr
            .split("offset ")
            .skip(1)
            .filter_map(|s| s.split(|c: char| !c.is_ascii_digit()).next()?.parse::<usize>().ok())
            .next();
        assert!(
            offset.is_some_and(|o| (start..=at).contains(&o)),
            "the error does not give an offset within {start}..={at}\n{}",
            r.describe()
        );
    }

    let r = list(&db, true);
    assert!(r.status.success(), "force_recovery start-up failed\n{}", r.describe());
    let keys = listed_keys(&r);
    let damaged = txn_keys([damaged_txn]);
    let others = txn_keys((1..=N).filter(|&i| i != damaged_txn));
    assert!(
        others.is_subset(&keys),
        "force_recovery lost undamaged transactions: {:?}",
        others.difference(&keys).collect::<Vec<_>>()
    );
    let present = damaged.intersection(&keys).count();
    assert!(
        present == 0 || present == damaged.len(),
        "transaction {damaged_txn} half recovered: {present} of its rows"
    );
}
