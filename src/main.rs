//! `node`: run a Tarantool Lua script, or open the console.

use std::io::IsTerminal;

use clap::Parser;

// mimalloc keeps small size classes in separate pages, so box tuples do not end up
// interleaved with short-lived Lua garbage (which left holes and a larger RSS with glibc).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs Tarantool Lua scripts on node's Rust runtime.
#[derive(Parser, Debug)]
#[command(name = "node", disable_version_flag = true)]
struct Cli {
    /// Open the interactive console after running the script.
    #[arg(short = 'i')]
    interactive: bool,

    /// Run a Lua chunk before the script (may be repeated).
    #[arg(short = 'e', value_name = "EXPR")]
    eval: Vec<String>,

    /// Attach a console to an instance's `console.listen` port (host:port, port,
    /// /path/to/unix.sock, unix/:/path); ends with the input or the connection.
    #[arg(long = "connect", value_name = "URI", conflicts_with_all = ["interactive", "eval", "script_and_args"])]
    connect: Option<String>,

    /// Print the version and exit.
    #[arg(short = 'v', long = "version")]
    version: bool,

    /// The script to run (`-` for stdin), then its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "SCRIPT [ARGS]")]
    script_and_args: Vec<String>,
}

fn main() {
    let cli = Cli::parse();
    if cli.version {
        println!("node {} (Tarantool 2.6 Lua API)", env!("CARGO_PKG_VERSION"));
        println!("Target: {}-{}", std::env::consts::OS, std::env::consts::ARCH);
        return;
    }
    let binary = std::env::args().next().unwrap_or_else(|| "node".into());
    if let Some(uri) = cli.connect {
        let code = node::runtime::run(node::runtime::Options {
            binary,
            connect: Some(uri),
            ..Default::default()
        });
        std::process::exit(code);
    }
    let mut rest = cli.script_and_args.into_iter();
    let mut script = rest.next();
    let args: Vec<String> = rest.collect();
    let mut interactive = cli.interactive;
    if script.is_none() && cli.eval.is_empty() {
        if std::io::stdin().is_terminal() {
            // `node` alone on a terminal: the console.
            interactive = true;
        } else if !interactive {
            // `node < file`: stdin is the script, as in Tarantool.
            script = Some("-".into());
        }
    }
    let code = node::runtime::run(node::runtime::Options {
        binary,
        script,
        args,
        eval: cli.eval,
        interactive,
        connect: None,
    });
    std::process::exit(code);
}
