//! The external Lambda extension (`/opt/extensions/wandb-nexus`): see `src/lambda/external.rs`.

fn main() -> std::process::ExitCode {
    _core::lambda::external::main()
}
