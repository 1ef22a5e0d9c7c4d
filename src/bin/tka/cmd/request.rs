//! `tka request`: activation requests, made on the machine to activate.

use crate::args::MachineArgs;
use crate::io::{identify, is_stdio, write_file};
use crate::output::{say, say_json_text};
use crate::qr::QrArgs;
use clap::Subcommand;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use tka::issuer::bulk;
use tka::request::ActivationRequest;
use tka::{clock, Result};

#[derive(Subcommand, Debug)]
pub enum RequestCmd {
    /// Create an activation request for this machine
    #[command(
        after_help = "EXAMPLES:\n  tka request create --product example-pro --out request.json\n  tka request create --product example-pro --text\n  tka request create --product example-pro --qr"
    )]
    Create {
        /// Product to activate
        #[arg(long)]
        product: String,
        /// Write the request to FILE (JSON, or text with --text); `-` for standard output
        #[arg(long)]
        out: Option<PathBuf>,
        /// One-line text form (for copy-paste and QR codes)
        #[arg(long)]
        text: bool,
        /// Include this host name in the request
        #[arg(long)]
        hostname: Option<String>,
        /// Replace an existing --out file
        #[arg(long)]
        force: bool,
        #[command(flatten)]
        machine: MachineArgs,
        #[command(flatten)]
        qr: QrArgs,
    },
    /// Write COUNT requests of synthetic machines, one text-form request per line (benchmarks, tests)
    #[command(hide = true)]
    GenerateTest {
        /// Product
        #[arg(long)]
        product: String,
        /// How many
        #[arg(long)]
        count: u64,
        /// Output file
        #[arg(long)]
        out: PathBuf,
        /// Machine numbering starts here (distinct batches of distinct machines)
        #[arg(long, default_value_t = 0)]
        first: u64,
    },
}

pub fn run(cmd: RequestCmd) -> Result<ExitCode> {
    match cmd {
        RequestCmd::Create { product, out, text, hostname, force, machine, qr } => {
            qr.check(force)?;
            if let Some(path) = out.as_deref().filter(|p| !is_stdio(p)) {
                if !force && path.exists() {
                    return Err(tka::Error::Exists { path: path.to_path_buf() });
                }
            }
            let id = identify(&product, &machine)?;
            let req = ActivationRequest::new(&id, clock::now(), hostname);
            let body = if text { req.to_text()? + "\n" } else { req.to_json() };
            match out.filter(|p| !is_stdio(p)) {
                Some(path) => {
                    write_file(&path, &body, force)?;
                    say(format!("request: {}", path.display()));
                }
                None if text => say(body.trim_end()),
                None => say_json_text(&body),
            }
            // The QR code holds the text form, the shortest.
            qr.emit(&req.to_text()?, "request", force)?;
            Ok(ExitCode::SUCCESS)
        }
        RequestCmd::GenerateTest { product, count, out, first } => generate_test_requests(&product, count, first, &out),
    }
}

/// `tka request generate-test` (hidden): synthetic requests for benchmarks.
fn generate_test_requests(product: &str, count: u64, first: u64, out: &Path) -> Result<ExitCode> {
    let now = clock::now();
    let mut text = String::with_capacity(count as usize * 200);
    for n in first..first.saturating_add(count) {
        text += &bulk::synthetic_request(product, n, now).to_text()?;
        text.push('\n');
    }
    write_file(out, &text, false)?;
    say(format!("requests: {count} in {}", out.display()));
    Ok(ExitCode::SUCCESS)
}
