//! The capture reader (`agent/src/capture.rs`) on arbitrary bytes, and what `analyze` does with
//! the frames it yields (link layers, tunnels, flow tracking, deep parsing, events): a corrupt
//! capture is an error (exit 2), never a panic.
#![no_main]

use std::{io::Write as _, path::PathBuf, sync::Arc, time::Duration};

use libfuzzer_sys::fuzz_target;
use sealwatch::{
    capture::{CaptureError, read_capture},
    cli::OutputFormat,
    offline::{AnalyzeError, analyze},
    policy::Policy,
};

/// One file per fuzzing process, rewritten for each input (`read_capture` takes a path, as
/// `analyze` does). In /dev/shm when there is one, so no disk is touched per run.
fn scratch() -> PathBuf {
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    dir.join(format!("sealwatch-fuzz-capture-{}", std::process::id()))
}

fuzz_target!(|data: &[u8]| {
    let path = scratch();
    let written = std::fs::File::create(&path).and_then(|mut f| f.write_all(data));
    assert!(
        written.is_ok(),
        "cannot write the scratch file {}",
        path.display()
    );

    let mut frames = 0u64;
    let read = read_capture(&path, |frame| {
        frames += 1;
        assert!(
            frame.data.len() <= data.len(),
            "a frame larger than the file"
        );
    });
    match &read {
        Ok(stats) => assert_eq!(stats.frames, frames + stats.unsupported),
        Err(CaptureError::Open { source, .. }) => {
            panic!("cannot reopen the scratch file: {source}")
        }
        Err(_) => {}
    }

    let policy = Arc::new(Policy::default());
    // One format per input (the whole pipeline is most of a run's time); the length picks it.
    let format = if data.len() % 2 == 0 {
        OutputFormat::Json
    } else {
        OutputFormat::Text
    };
    {
        let mut out = Vec::new();
        let analyzed = analyze(
            std::slice::from_ref(&path),
            Duration::from_secs(60),
            format,
            policy.clone(),
            None,
            &mut out,
        );
        // `analyze` reads the file as `read_capture` does: both fail or neither.
        match analyzed {
            Ok(summary) => {
                assert!(read.is_ok(), "analyze read what read_capture refused");
                let _ = summary.render();
            }
            Err(AnalyzeError::Capture(_)) => assert!(read.is_err()),
            Err(e) => panic!("analyze failed writing to memory: {e}"),
        }
    }
});
