//! `vestibule`: a ready auth server for single-page applications.
//!
//! Thin on purpose: parse the command line, set up logging, dispatch to one module per
//! subcommand, turn the result into an exit code. The logic lives in the `vestibule` library.

mod alloc;
mod cli;
mod cmd;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        // The blocking pool runs Argon2, whose 19 MiB of blocks the allocator keeps with the
        // thread that freed them until that thread exits: an idle thread going away after 2 s
        // instead of tokio's 10 s gives a login burst's memory back sooner (bench/memory.sh).
        .thread_keep_alive(std::time::Duration::from_secs(2))
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Ends with the runtime: one-shot commands never reach its first tick.
    runtime.spawn(alloc::give_back_freed_memory());
    match runtime.block_on(cmd::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
