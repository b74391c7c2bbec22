//! The pipeline over the 25-minute attack log (lines/s):
//!
//! - `decode-chunk`: one 256 KiB chunk decoded into a batch, as a worker does;
//! - `replay/threads-1` and `replay/threads-2`: the whole pipeline (read, decode, merge,
//!   engine) over the log as one file, inline and with two decode workers;
//! - `replay/3-rotated-files`: the same lines as three files merged by event time.

mod common;

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use gatewatch::detect::{DetectorDef, Engine, EngineSettings};
use gatewatch::detectors_dir;
use gatewatch::input::{ChunkReader, DEFAULT_MAX_LINE};
use gatewatch::parse::{preset, TrustedProxies};
use gatewatch::pipeline::{self, DecodeSpec, PipelineSettings, Sink, Spare};

use common::combined_lines;

fn write_files(dir: &std::path::Path, lines: &[Vec<u8>], parts: usize) -> Vec<PathBuf> {
    let per = lines.len().div_ceil(parts);
    lines
        .chunks(per)
        .enumerate()
        .map(|(i, part)| {
            let path = dir.join(format!("access.log.{i}"));
            let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
            for line in part {
                file.write_all(line).unwrap();
                file.write_all(b"\n").unwrap();
            }
            path
        })
        .collect()
}

fn replay(defs: &[DetectorDef], files: &[PathBuf], threads: usize) -> u64 {
    let settings = PipelineSettings {
        threads,
        ..PipelineSettings::default()
    };
    let read = pipeline::read_spec(
        pipeline::preset_format("combined"),
        TrustedProxies::default(),
        pipeline::chunk_bytes_for(files.len(), settings.depth, DEFAULT_MAX_LINE),
        DEFAULT_MAX_LINE,
    );
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let inputs = names
        .iter()
        .map(|n| gatewatch::input::open(n).unwrap())
        .collect();
    let streams = pipeline::sources(inputs, &read, &settings);
    let mut engine = Engine::new(defs, EngineSettings::default());
    let merge = pipeline::run(
        names,
        streams,
        &mut engine,
        &mut Vec::<&mut dyn Sink>::new(),
        &settings,
        &mut |_| {},
    )
    .unwrap();
    merge.events()
}

fn benches(c: &mut Criterion) {
    let defs = detectors_dir::load(None).expect("built-in detectors");
    let lines = combined_lines(None);
    let text: Vec<u8> = lines
        .iter()
        .flat_map(|l| [&l[..], b"\n"].concat())
        .collect();

    let mut group = c.benchmark_group("pipeline");
    let mut reader = ChunkReader::new(&text[..], 256 << 10, DEFAULT_MAX_LINE);
    let chunk = reader.next_chunk(Vec::new()).unwrap().unwrap();
    let spec = DecodeSpec {
        parser: Arc::from(preset("combined").unwrap()),
        trusted: TrustedProxies::default(),
        max_line_bytes: DEFAULT_MAX_LINE,
        source: "bench".into(),
        path_match: None,
    };
    let chunk_lines = chunk.bytes().iter().filter(|&&b| b == b'\n').count();
    group.throughput(Throughput::Elements(chunk_lines as u64));
    group.bench_function("decode-chunk", |b| {
        b.iter_batched(
            || gatewatch::input::Chunk {
                data: chunk.data.clone(),
                len: chunk.len,
                ..Default::default()
            },
            |chunk| {
                pipeline::decode(chunk, &spec, Spare::default())
                    .records()
                    .len()
            },
            criterion::BatchSize::LargeInput,
        )
    });
    group.finish();

    let dir = tempfile::tempdir().unwrap();
    let one = write_files(dir.path(), &lines, 1);
    let rotated_dir = dir.path().join("rotated");
    std::fs::create_dir(&rotated_dir).unwrap();
    let three = write_files(&rotated_dir, &lines, 3);
    let mut group = c.benchmark_group("replay");
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Elements(lines.len() as u64));
    group.bench_function("threads-1", |b| b.iter(|| replay(&defs, &one, 1)));
    group.bench_function("threads-2", |b| b.iter(|| replay(&defs, &one, 2)));
    group.bench_function("3-rotated-files", |b| b.iter(|| replay(&defs, &three, 2)));
    group.finish();
}

criterion_group!(pipeline_benches, benches);
criterion_main!(pipeline_benches);
