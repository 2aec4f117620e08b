//! `admission-instructions CASE N`: makes the admission decision of one benchmark case N times
//! inside `certgate_counted_decisions`, for `valgrind --tool=callgrind` to count its instructions
//! (scripts/bench.sh). Instruction counts do not depend on what else the machine is doing.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::process::ExitCode;

use certgate_benches::{Admission, AdmissionFixture};
use certgate_gateway::admission::RequestFacts;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cases: Vec<&str> = Admission::ALL.iter().map(|a| a.name()).collect();
    let (Some(case), Some(Ok(n))) = (args.first(), args.get(1).map(|n| n.parse::<u32>())) else {
        eprintln!(
            "usage: admission-instructions CASE N (CASE: {})",
            cases.join(", ")
        );
        return ExitCode::from(2);
    };
    let Some(admission) = Admission::ALL.into_iter().find(|a| a.name() == case) else {
        eprintln!("unknown case {case:?} (cases: {})", cases.join(", "));
        return ExitCode::from(2);
    };
    let fixture = AdmissionFixture::new();
    let facts = fixture.facts(admission);
    let decision = fixture.decide(&facts).decision();
    if decision != admission.expected() {
        eprintln!(
            "{case}: decided {decision:?}, expected {:?}",
            admission.expected()
        );
        return ExitCode::FAILURE;
    }
    certgate_counted_decisions(&fixture, &facts, n);
    ExitCode::SUCCESS
}

#[inline(never)]
fn certgate_counted_decisions(fixture: &AdmissionFixture, facts: &RequestFacts<'_>, n: u32) {
    for _ in 0..n {
        black_box(fixture.decide(black_box(facts)));
    }
}
