//! `claimctl`: the one binary. All logic lives in the library so tests drive the same entry point.

use std::process::ExitCode;

/// jemalloc instead of the system allocator: the worker builds, serializes and drops many small
/// JSON trees per claim, and with glibc's malloc the allocator alone took about a third of the
/// worker's CPU (`claimctl bench`: about 40 % less worker CPU per claim with jemalloc).
#[cfg(not(target_env = "msvc"))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match claimctl::run(args, &mut out) {
        Ok(code) => ExitCode::from(code),
        Err(error) => {
            eprintln!("claimctl: {error:#}");
            ExitCode::from(2)
        }
    }
}
