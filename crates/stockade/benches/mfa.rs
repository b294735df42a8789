//! Micro-benchmarks of the second factor's hot path (issue #19 item 10):
//! checking a TOTP code as `POST /v1/auth/mfa` does — open the sealed
//! secret (AES-256-GCM) and compute the three candidate steps (HMAC-SHA-1)
//! — for a right code and a wrong one (a wrong one computes every step
//! too, so the two cost the same). The WebAuthn assertion verify is
//! `benches/webauthn.rs`.
// A benchmark's fixture failing is a broken benchmark: it may panic.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use stockade_core::crypto::seal;
use stockade_core::mfa::totp;

fn totp_verify(c: &mut Criterion) {
    let secret = [0x5au8; totp::SECRET_BYTES];
    let master = [0x42u8; 32];
    let aad = b"stockade:mfa_totp:0190f3a2-0000-7000-8000-000000000000";
    let sealed = seal::seal(&master, aad, &secret).expect("seal");
    let now: i64 = 1_800_000_000;
    let right =
        totp::parse_code(&totp::code_at(&secret, now as u64).expect("code")).expect("parse");
    let wrong = *b"000000";
    let mut group = c.benchmark_group("mfa");
    group.sample_size(50);
    group.bench_function("totp_verify", |b| {
        b.iter(|| totp::verify(black_box(&secret), black_box(&right), now, None));
    });
    group.bench_function("totp_verify_wrong", |b| {
        b.iter(|| totp::verify(black_box(&secret), black_box(&wrong), now, None));
    });
    group.bench_function("totp_open_and_verify", |b| {
        b.iter(|| {
            let opened = seal::open(&master, black_box(aad), black_box(&sealed)).expect("open");
            totp::verify(&opened, black_box(&right), now, Some(1))
        });
    });
    group.finish();
}

criterion_group!(benches, totp_verify);
criterion_main!(benches);
