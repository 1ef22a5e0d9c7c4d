//! `tka completions` and `tka man`: shell completions and the man page,
//! written from the clap definitions (packages install them; see README).

use crate::output::say_document;
use clap::CommandFactory;
use clap_complete::Shell;
use std::process::ExitCode;
use tka::{Error, Result};

/// The whole command tree as `--help` shows it: ENVIRONMENT, EXAMPLES and
/// EXIT CODES sections included.
fn tree() -> clap::Command {
    crate::outcome::with_exit_codes(crate::with_environment(crate::Cli::command()))
}

/// `tka completions SHELL`: the completion script on standard output.
pub fn completions(shell: Shell) -> Result<ExitCode> {
    let mut cmd = tree();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "tka", &mut out);
    say_document(&String::from_utf8_lossy(&out));
    Ok(ExitCode::SUCCESS)
}

/// `tka man`: the man page tka(1) (roff) on standard output, one section
/// per command after the top-level page.
pub fn man() -> Result<ExitCode> {
    let cmd = tree();
    let mut out = Vec::new();
    let io = |e: std::io::Error| Error::Usage(format!("cannot write the man page: {e}"));
    clap_mangen::Man::new(cmd.clone()).render(&mut out).map_err(io)?;
    cmd.get_subcommands().try_for_each(|sub| render_sub(&mut out, sub, "tka")).map_err(io)?;
    say_document(&String::from_utf8_lossy(&out));
    Ok(ExitCode::SUCCESS)
}

/// The sections of `sub` (and its subcommands) as `.SH "tka NOUN VERB"`
/// with its description, options and help text.
fn render_sub(out: &mut Vec<u8>, sub: &clap::Command, parent: &str) -> std::io::Result<()> {
    if sub.is_hide_set() {
        return Ok(());
    }
    let name = format!("{parent} {}", sub.get_name());
    let leaf = sub.get_subcommands().next().is_none();
    if leaf {
        let mut page = Vec::new();
        clap_mangen::Man::new(sub.clone()).render_options_section(&mut page)?;
        let about = sub.get_about().map(|a| a.to_string()).unwrap_or_default();
        let after = sub.get_after_help().map(|a| a.to_string()).unwrap_or_default();
        out.extend_from_slice(format!(".SH \"{}\"\n{}\n", name.to_uppercase(), roff_text(&about)).as_bytes());
        out.extend_from_slice(&page);
        if !after.is_empty() {
            out.extend_from_slice(format!(".PP\n.nf\n{}\n.fi\n", roff_text(&after)).as_bytes());
        }
    }
    sub.get_subcommands().try_for_each(|s| render_sub(out, s, &name))
}

/// `text` safe as roff body text: backslashes doubled, a leading dot or
/// quote escaped.
fn roff_text(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The shells `tka completions` writes for.
pub fn shell_parser(s: &str) -> std::result::Result<Shell, String> {
    match s {
        "bash" => Ok(Shell::Bash),
        "zsh" => Ok(Shell::Zsh),
        "fish" => Ok(Shell::Fish),
        "powershell" => Ok(Shell::PowerShell),
        other => Err(format!("{other:?} is not a shell tka completes: bash, zsh, fish or powershell")),
    }
}
