use std::process::ExitCode;

fn main() -> ExitCode {
    // `flowc run` starts its steps through a spawner process forked now,
    // while flowc is small and has a single thread.
    if flowc::cli::runs_steps(std::env::args_os().skip(1)) {
        flowc::sandbox::start_spawner();
    }
    // Deeply nested input is bounded by the parser, but give the checker room anyway.
    let worker = std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(flowc::cli::main);
    match worker.map(|h| h.join()) {
        Ok(Ok(code)) => code,
        _ => {
            eprintln!("error: flowc crashed; please report this with the input that caused it");
            ExitCode::from(101)
        }
    }
}
