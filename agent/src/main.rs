use std::{io::IsTerminal, process::ExitCode, sync::Arc};

use clap::Parser;
use sealwatch::{
    cli::{Cli, Command, OutputFormat, PolicyCommand},
    offline,
    policy::{self, Policy, file::Mode},
    run,
};
use tracing_subscriber::{EnvFilter, filter::LevelFilter};

fn main() -> ExitCode {
    // clap exits with 2 on bad usage, as the contract wants.
    let cli = Cli::parse();
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .from_env_lossy();
    let kernel_log_level = kernel_log_level(&filter);
    // Logs go to stderr; stdout carries only events.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();

    match cli.command {
        Command::Analyze(args) if args.read_only => match offline::read_only(&args.files) {
            Ok(read) => {
                println!("{}", serde_json::json!(read));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sealwatch: {}", error_chain(&e));
                ExitCode::from(2)
            }
        },
        Command::Policy(PolicyCommand::Check { file, explain }) => match policy::load(&file) {
            Ok(p) => {
                let p = Policy::new(p);
                if explain {
                    print!("{}", p.explain());
                }

                println!("{}: valid", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("sealwatch: {e}");
                ExitCode::from(2)
            }
        },
        Command::Policy(PolicyCommand::Suggest { files }) => {
            match policy::suggest::suggest(&files) {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("sealwatch: {}", error_chain(&e));
                    ExitCode::from(2)
                }
            }
        }
        Command::Report(args) => report(&args),
        Command::Analyze(args) => {
            let format = args.output.unwrap_or_else(default_format);
            let policy = match load_policy(args.policy.as_deref(), None, Trust::Any) {
                Ok(p) => p,
                Err(code) => return code,
            };
            let flow_log = match args.flow_log.config() {
                Some(c) => match sealwatch::flowlog::FlowLog::open(c, Default::default()) {
                    Ok(log) => Some(log),
                    Err(e) => {
                        eprintln!("sealwatch: {}", error_chain(&e));
                        return ExitCode::from(2);
                    }
                },
                None => None,
            };
            match offline::analyze(
                &args.files,
                args.idle_timeout,
                format,
                policy,
                flow_log,
                std::io::stdout().lock(),
            ) {
                Ok(summary) => {
                    if format == OutputFormat::Text {
                        print!("{}", summary.render());
                    }
                    ExitCode::SUCCESS
                }
                // Unreadable or corrupt input is bad input (2); failing to write is a runtime failure (1).
                Err(offline::AnalyzeError::Capture(e)) => {
                    eprintln!("sealwatch: {}", error_chain(&e));
                    ExitCode::from(2)
                }
                Err(e) => fail(&error_chain(&e)),
            }
        }
        Command::Run(args) => {
            let format = args.output.unwrap_or_else(default_format);
            let policy = match load_policy(args.policy.as_deref(), args.mode, Trust::Writers) {
                Ok(p) => p,
                Err(code) => return code,
            };
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return fail(&format!("cannot start the runtime: {e}")),
            };
            match runtime.block_on(run::run(
                &args,
                format,
                policy,
                std::io::stdout().lock(),
                kernel_log_level,
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.is_bad_input() => {
                    eprintln!("sealwatch: {}", error_chain(&e));
                    ExitCode::from(2)
                }
                Err(e) => fail(&error_chain(&e)),
            }
        }
    }
}

fn report(args: &sealwatch::cli::ReportArgs) -> ExitCode {
    use sealwatch::report::{self, Format};
    let inv = match report::inventory(&args.files) {
        Ok(inv) => inv,
        Err(e) => {
            eprintln!("sealwatch: {}", error_chain(&e));
            return ExitCode::from(2);
        }
    };
    let text = match args.format {
        Format::Table => report::table(&inv),
        Format::Json => report::json(&inv),
        Format::Html => report::html(
            &inv,
            args.group_by,
            &sealwatch::clock::rfc3339(std::time::SystemTime::now()),
        ),
    };
    let written = match &args.output {
        Some(path) => std::fs::write(path, text),
        None => {
            use std::io::Write as _;
            std::io::stdout().lock().write_all(text.as_bytes())
        }
    };
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(&format!("cannot write the report: {e}")),
    }
}

/// Whose policy files are read.
enum Trust {
    /// Any readable file (`analyze` only says what a policy would do).
    Any,
    /// Only files no other user can change (`run` enforces them).
    Writers,
}

/// The policy file, or the built-in defaults, with `mode` (the command line's) overriding the
/// file's; a bad file is bad input (exit 2).
fn load_policy(
    path: Option<&std::path::Path>,
    mode: Option<Mode>,
    trust: Trust,
) -> Result<Arc<Policy>, ExitCode> {
    let Some(path) = path else {
        return Ok(Arc::new(Policy::default().with_mode(mode)));
    };
    let loaded = match trust {
        Trust::Any => policy::load_policy(path, mode),
        Trust::Writers => policy::load_trusted_policy(path, mode),
    };
    match loaded {
        Ok(p) => Ok(Arc::new(p)),
        Err(e) => {
            eprintln!("sealwatch: {e}");
            Err(ExitCode::from(2))
        }
    }
}

/// Text on a terminal, JSON lines otherwise.
fn default_format() -> OutputFormat {
    if std::io::stdout().is_terminal() {
        OutputFormat::Text
    } else {
        OutputFormat::Json
    }
}

/// aya-log level for the kernel programs: their debug statements cost nothing unless asked for.
fn kernel_log_level(filter: &EnvFilter) -> u8 {
    match filter.max_level_hint() {
        Some(LevelFilter::TRACE) => 5,
        Some(LevelFilter::DEBUG) => 4,
        _ => 0,
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_msg = s.to_string();
        if !msg.contains(&s_msg) {
            msg.push_str(": ");
            msg.push_str(&s_msg);
        }
        source = s.source();
    }
    msg
}

fn fail(msg: &str) -> ExitCode {
    eprintln!("sealwatch: {msg}");
    ExitCode::from(1)
}
