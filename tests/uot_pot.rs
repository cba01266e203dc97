//! The UOT solver against the Python Optimal Transport package: fixtures written by
//! `scripts/gen_uot_fixtures.py` (POT's `sinkhorn_knopp_unbalanced` for the plain iteration,
//! `sinkhorn_stabilized_unbalanced` run to convergence for a small eps).

use ptsel::uot::{solve, Domain, UotParams, PLAIN_LIMIT};
use serde::Deserialize;
mod common;

#[derive(Deserialize)]
struct Fixture {
    name: String,
    solver: String,
    rows: usize,
    cols: usize,
    eps: f64,
    tau_source: f64,
    tau_target: f64,
    max_iter: usize,
    tol: f64,
    a: Vec<f64>,
    b: Vec<f64>,
    cost: Vec<f64>,
    plan: Vec<f64>,
    iterations: Option<usize>,
}

fn fixtures() -> Vec<Fixture> {
    common::json_fixtures("uot", 5)
}

fn params(f: &Fixture, domain: Domain) -> UotParams {
    UotParams {
        eps: f.eps,
        tau_source: f.tau_source,
        tau_target: f.tau_target,
        max_iter: f.max_iter,
        tol: f.tol,
        domain,
    }
}

/// Largest elementwise relative difference; entries below 1e-12 of the plan's largest are
/// compared relative to that floor (at 1e-200 and below, exp's rounding dominates both sides).
fn max_rel(ours: &[f64], oracle: &[f64]) -> f64 {
    assert_eq!(ours.len(), oracle.len());
    let floor = 1e-12 * oracle.iter().fold(0.0f64, |m, y| m.max(y.abs()));
    ours.iter()
        .zip(oracle)
        .map(|(x, y)| (x - y).abs() / y.abs().max(floor))
        .fold(0.0, f64::max)
}

/// The plan agrees with POT's to 1e-6 relative (see [`max_rel`]).
fn assert_matches_pot(f: &Fixture, plan: &[f64], what: &str) {
    let rel = max_rel(plan, &f.plan);
    assert!(rel < 1e-6, "{}: {what} by {rel:e} relative", f.name);
}

#[test]
fn plain_solver_matches_pot_iterate_for_iterate() {
    for f in fixtures().iter().filter(|f| f.solver == "plain") {
        let plan = solve(&f.cost, &f.a, &f.b, &params(f, Domain::Plain)).unwrap();
        assert_eq!((plan.rows, plan.cols), (f.rows, f.cols));
        assert!(!plan.log_domain);
        assert_eq!(
            Some(plan.iterations),
            f.iterations,
            "{}: iteration count differs from POT",
            f.name
        );
        assert_matches_pot(f, &plan.plan, "plan differs from POT");
        // Auto picks the plain iteration for these costs.
        assert_eq!(
            solve(&f.cost, &f.a, &f.b, &params(f, Domain::Auto)).unwrap(),
            plan
        );
    }
}

#[test]
fn small_eps_uses_log_domain_and_matches_pot_stabilised() {
    let all = fixtures();
    let stabilised: Vec<&Fixture> = all.iter().filter(|f| f.solver == "stabilized").collect();
    assert_eq!(stabilised.len(), 2);
    for f in stabilised {
        let max_scaled = f.cost.iter().fold(0.0f64, |m, c| m.max(*c)) / f.eps;
        assert!(
            max_scaled > PLAIN_LIMIT,
            "{}: the fixture must be out of the plain kernel's range",
            f.name
        );
        let plan = solve(&f.cost, &f.a, &f.b, &params(f, Domain::Auto)).unwrap();
        assert!(
            plan.log_domain && plan.converged,
            "{}: {} iterations",
            f.name,
            plan.iterations
        );
        assert_matches_pot(f, &plan.plan, "plan differs from POT");
        // The plain kernel may underflow here: then it must refuse rather than return garbage.
        if let Ok(p) = solve(&f.cost, &f.a, &f.b, &params(f, Domain::Plain)) {
            assert_matches_pot(
                f,
                &p.plan,
                "the plain kernel returned a wrong plan: it differs from POT",
            );
        }
    }
}

#[test]
fn log_domain_reaches_the_plain_fixed_point() {
    for f in fixtures()
        .iter()
        .filter(|f| f.solver == "plain" && f.name != "capped")
    {
        let tight = |domain| UotParams {
            tol: 1e-13,
            max_iter: 100_000,
            ..params(f, domain)
        };
        let plain = solve(&f.cost, &f.a, &f.b, &tight(Domain::Plain)).unwrap();
        let log = solve(&f.cost, &f.a, &f.b, &tight(Domain::Log)).unwrap();
        assert!(plain.converged && log.converged && log.log_domain);
        let rel = max_rel(&log.plan, &plain.plan);
        assert!(
            rel < 1e-9,
            "{}: log and plain fixed points differ by {rel:e}",
            f.name
        );
        assert!((log.marginal_error - plain.marginal_error).abs() < 1e-9);
    }
}

#[test]
fn bad_problems_are_errors() {
    let p = UotParams::default();
    assert!(solve(&[1.0; 6], &[1.0; 2], &[1.0; 2], &p).is_err(), "shape");
    assert!(
        solve(&[1.0; 4], &[1.0, 0.0], &[1.0; 2], &p).is_err(),
        "zero marginal"
    );
    assert!(
        solve(&[1.0, f64::NAN, 1.0, 1.0], &[1.0; 2], &[1.0; 2], &p).is_err(),
        "NaN cost"
    );
    assert!(
        solve(
            &[1.0; 4],
            &[1.0; 2],
            &[1.0; 2],
            &UotParams { eps: 0.0, ..p }
        )
        .is_err(),
        "eps 0"
    );
    assert!(
        solve(
            &[1.0; 4],
            &[1.0; 2],
            &[1.0; 2],
            &UotParams { max_iter: 0, ..p }
        )
        .is_err(),
        "no iterations"
    );
}
