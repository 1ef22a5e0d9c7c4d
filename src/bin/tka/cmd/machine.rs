//! `tka machine`: this machine's identity.

use crate::args::{JsonArg, MachineArgs};
use crate::io::identify;
use crate::output::print_identity;
use clap::Subcommand;
use std::process::ExitCode;
use tka::Result;

#[derive(Subcommand, Debug)]
pub enum MachineCmd {
    /// Print this machine's CMID and hashed identity components
    #[command(
        after_help = "EXAMPLES:\n  tka machine id --product example-pro\n  tka machine id --product example-pro --explain --json"
    )]
    Id {
        /// Product the hashes are scoped to
        #[arg(long, default_value = "default")]
        product: String,
        /// Show which sources were found and why others were not
        #[arg(long)]
        explain: bool,
        /// With --explain, also print raw identifier values (stays on this machine)
        #[arg(long, requires = "explain")]
        show_values: bool,
        #[command(flatten)]
        machine: MachineArgs,
        #[command(flatten)]
        out: JsonArg,
    },
}

pub fn run(cmd: MachineCmd) -> Result<ExitCode> {
    match cmd {
        MachineCmd::Id { product, explain, show_values, machine, out } => {
            let id = identify(&product, &machine)?;
            print_identity(&id, explain, show_values, out.json);
            Ok(ExitCode::SUCCESS)
        }
    }
}
