//! Parse layer throughput (bytes/s): the format presets, `--format auto`, container
//! unwrapping and the full `Decoder` path.
//!
//! Every input set is built once, before any timing; each iteration walks the whole set.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, SamplingMode, Throughput};
use gatewatch::parse::{detect_format, preset, unwrap_line, Decoder, Parser};

use common::{
    combined_lines, cri_wrap, docker_wrap, envoy_json_lines, envoy_lines, ingress_lines,
    total_bytes, traefik_json_lines, traefik_lines,
};

/// Lines per input set.
const LINES: usize = 20_000;
/// Lines sampled by `--format auto`.
const AUTO_SAMPLE: usize = 64;

/// Panics unless `parser` reads every line: the benches must time the success path.
fn assert_all_parse(parser: &dyn Parser, lines: &[Vec<u8>]) {
    let failed = lines.iter().filter(|l| parser.parse(l).is_err()).count();
    assert_eq!(failed, 0, "{} rejects {failed} bench lines", parser.name());
}

/// Times `parser` over every line of `lines`.
fn bench_parser(c: &mut Criterion, id: &str, parser: &dyn Parser, lines: &[Vec<u8>]) {
    assert_all_parse(parser, lines);
    let mut group = c.benchmark_group("parse");
    configure(&mut group);
    group.throughput(Throughput::BytesDecimal(total_bytes(lines)));
    group.bench_function(id, |b| {
        b.iter(|| {
            for line in lines {
                let _ = black_box(parser.parse(black_box(line)));
            }
        })
    });
    group.finish();
}

fn configure(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sampling_mode(SamplingMode::Flat);
}

fn parsers(c: &mut Criterion) {
    let combined = combined_lines(Some(LINES));
    let ingress = ingress_lines(&combined);

    let combined_parser = preset("combined").expect("combined preset");
    bench_parser(c, "combined", combined_parser.as_ref(), &combined);
    let ingress_parser = preset("ingress-nginx").expect("ingress-nginx preset");
    bench_parser(c, "ingress-nginx", ingress_parser.as_ref(), &ingress);
    let traefik_clf = traefik_lines(&combined);
    let traefik_clf_parser = preset("traefik").expect("traefik preset");
    bench_parser(c, "traefik", traefik_clf_parser.as_ref(), &traefik_clf);
    let envoy_text = envoy_lines(&combined);
    let envoy_text_parser = preset("envoy").expect("envoy preset");
    bench_parser(c, "envoy", envoy_text_parser.as_ref(), &envoy_text);
    let traefik = traefik_json_lines(&combined);
    let traefik_parser = preset("traefik-json").expect("traefik-json preset");
    bench_parser(c, "traefik-json", traefik_parser.as_ref(), &traefik);
    let envoy = envoy_json_lines(&combined);
    let envoy_parser = preset("envoy-json").expect("envoy-json preset");
    bench_parser(c, "envoy-json", envoy_parser.as_ref(), &envoy);
}

fn auto_detection(c: &mut Criterion) {
    let combined = combined_lines(Some(AUTO_SAMPLE));
    let ingress = ingress_lines(&combined);
    let mut group = c.benchmark_group("parse/auto");
    configure(&mut group);
    for (id, sample, expected) in [
        ("combined-64", &combined, "combined"),
        ("ingress-nginx-64", &ingress, "ingress-nginx"),
    ] {
        let detected = detect_format(sample.iter().map(Vec::as_slice)).expect("detected");
        assert_eq!(detected.format, expected);
        assert_eq!(detected.parsed, AUTO_SAMPLE);
        group.throughput(Throughput::BytesDecimal(total_bytes(sample)));
        group.bench_function(id, |b| {
            b.iter(|| black_box(detect_format(black_box(sample).iter().map(Vec::as_slice))))
        });
    }
    group.finish();
}

fn unwrapping(c: &mut Criterion) {
    let combined = combined_lines(Some(LINES));
    let cri = cri_wrap(&combined);
    let docker = docker_wrap(&combined);
    let mut group = c.benchmark_group("parse/unwrap");
    configure(&mut group);
    for (id, lines) in [("cri", &cri), ("docker", &docker)] {
        for line in lines {
            let unwrapped = unwrap_line(line).expect("wrapped").expect("valid wrapper");
            assert!(!unwrapped.partial);
        }
        group.throughput(Throughput::BytesDecimal(total_bytes(lines)));
        group.bench_function(id, |b| {
            b.iter(|| {
                for line in lines {
                    let _ = black_box(unwrap_line(black_box(line)));
                }
            })
        });
    }
    group.finish();
}

/// Physical line → `Request` as `gatewatch` runs it: unwrap, join, parse, time fallback.
fn decoder(c: &mut Criterion) {
    let combined = combined_lines(Some(LINES));
    let ingress = ingress_lines(&combined);
    let inputs = [
        ("cri-ingress-nginx", "ingress-nginx", cri_wrap(&ingress)),
        ("plain-combined", "combined", combined),
    ];
    let mut group = c.benchmark_group("parse/decoder");
    configure(&mut group);
    for (id, format, lines) in &inputs {
        let mut decoder = Decoder::new(preset(format).expect("preset"));
        let ok = lines
            .iter()
            .filter(|line| decoder.decode(line, |_, parsed| parsed.is_ok()) == Some(true))
            .count();
        assert_eq!(ok, lines.len(), "{id}: every line decodes");
        group.throughput(Throughput::BytesDecimal(total_bytes(lines)));
        group.bench_function(*id, |b| {
            b.iter(|| {
                for line in lines {
                    black_box(decoder.decode(black_box(line), |record, parsed| {
                        black_box((record.len(), &parsed));
                    }));
                }
            })
        });
    }
    group.finish();
}

criterion_group!(benches, parsers, auto_detection, unwrapping, decoder);
criterion_main!(benches);
