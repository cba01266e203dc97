//! The sparse UOT solver (`uot::solve_sparse`): the complete graph against the dense solver,
//! masked problems against the Python Optimal Transport package (fixtures written by
//! `scripts/gen_sparse_uot_fixtures.py`), determinism across thread counts, warm starts and
//! bad input.

use ptsel::uot::{self, solve_sparse, Domain, SparseCost, UotParams};
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
    edges: Vec<(u32, u32, f64)>,
    plan: Vec<f64>,
    iterations: Option<usize>,
}

fn fixtures() -> Vec<Fixture> {
    common::json_fixtures("sparse_uot", 4)
}

impl Fixture {
    fn params(&self, domain: Domain) -> UotParams {
        UotParams {
            eps: self.eps,
            tau_source: self.tau_source,
            tau_target: self.tau_target,
            max_iter: self.max_iter,
            tol: self.tol,
            domain,
        }
    }

    /// The graph, and for each of its edges (column order) the fixture's edge index.
    fn graph(&self) -> (SparseCost, Vec<usize>) {
        let mut columns = vec![Vec::new(); self.cols];
        for &(i, j, c) in &self.edges {
            columns[j as usize].push((i, c));
        }
        let g = SparseCost::from_columns(self.rows, columns).unwrap();
        let mut order = Vec::new();
        for j in 0..self.cols {
            for &i in g.column(j).0 {
                order.push(
                    self.edges
                        .iter()
                        .position(|e| e.0 == i && e.1 == j as u32)
                        .unwrap(),
                );
            }
        }
        (g, order)
    }
}

/// Largest relative difference, entries below 1e-12 of the largest compared to that floor.
fn max_rel(ours: &[f64], oracle: &[f64]) -> f64 {
    assert_eq!(ours.len(), oracle.len());
    let floor = 1e-12 * oracle.iter().fold(0.0f64, |m, y| m.max(y.abs()));
    ours.iter()
        .zip(oracle)
        .map(|(x, y)| (x - y).abs() / y.abs().max(floor))
        .fold(0.0, f64::max)
}

#[test]
fn plain_matches_pot_iterate_for_iterate_on_masked_problems() {
    let all = fixtures();
    let plain: Vec<&Fixture> = all.iter().filter(|f| f.solver == "plain").collect();
    assert!(plain.len() >= 3);
    for f in plain {
        let (g, order) = f.graph();
        let want: Vec<f64> = order.iter().map(|&e| f.plan[e]).collect();
        let p = solve_sparse(&g, &f.a, &f.b, &f.params(Domain::Plain), None).unwrap();
        assert!(!p.log_domain);
        assert_eq!(Some(p.iterations), f.iterations, "{}: iterations", f.name);
        let rel = max_rel(&p.plan, &want);
        assert!(rel < 1e-9, "{}: plan differs from POT by {rel:e}", f.name);
        let auto = solve_sparse(&g, &f.a, &f.b, &f.params(Domain::Auto), None).unwrap();
        assert_eq!(auto, p, "{}: auto picks plain here", f.name);
        let log = solve_sparse(&g, &f.a, &f.b, &f.params(Domain::Log), None).unwrap();
        if f.name != "knn_capped" {
            let rel = max_rel(&log.plan, &want);
            assert!(
                rel < 1e-6,
                "{}: log plan differs from POT by {rel:e}",
                f.name
            );
        }
    }
}

#[test]
fn log_domain_matches_pot_stabilised_at_small_eps() {
    for f in fixtures().iter().filter(|f| f.solver == "stabilized") {
        let (g, order) = f.graph();
        let want: Vec<f64> = order.iter().map(|&e| f.plan[e]).collect();
        let p = solve_sparse(&g, &f.a, &f.b, &f.params(Domain::Log), None).unwrap();
        assert!(p.log_domain && p.converged, "{}: {}", f.name, p.iterations);
        let rel = max_rel(&p.plan, &want);
        assert!(rel < 1e-6, "{}: plan differs from POT by {rel:e}", f.name);
    }
}

/// A dense cost like the class-level one.
fn dense_cost(rows: usize, cols: usize, seed: u64) -> Vec<f64> {
    let s: Vec<f64> = ptsel::synth::gaussian_matrix(rows, 8, seed)
        .iter()
        .map(|&x| f64::from(x) + 0.5)
        .collect();
    let t: Vec<f64> = ptsel::synth::gaussian_matrix(cols, 8, seed + 1)
        .iter()
        .map(|&x| f64::from(x) + 0.5)
        .collect();
    uot::cost_matrix(&s, &t, 8, 0.1)
}

#[test]
fn the_complete_graph_is_the_dense_solve() {
    let (rows, cols) = (70, 23);
    let cost = dense_cost(rows, cols, 5);
    let g = SparseCost::dense(&cost, rows, cols).unwrap();
    let (a, b) = (vec![1.0; rows], vec![1.0; cols]);
    for (eps, domain) in [
        (1.0, Domain::Plain),
        (1.0, Domain::Log),
        (0.1, Domain::Auto),
        (0.005, Domain::Auto),
    ] {
        let p = UotParams {
            eps,
            domain,
            ..UotParams::DEFAULT
        };
        let dense = uot::solve(&cost, &a, &b, &p).unwrap();
        let sparse = solve_sparse(&g, &a, &b, &p, None).unwrap();
        assert_eq!(dense.iterations, sparse.iterations, "eps {eps} {domain:?}");
        assert_eq!(dense.log_domain, sparse.log_domain);
        // Dense is row-major, the sparse plan is by column.
        let dense_by_col: Vec<f64> = (0..cols)
            .flat_map(|j| (0..rows).map(move |i| (i, j)))
            .map(|(i, j)| dense.plan[i * cols + j])
            .collect();
        let rel = max_rel(&sparse.plan, &dense_by_col);
        assert!(rel <= 1e-12, "eps {eps} {domain:?}: {rel:e}");
        let rel = max_rel(&sparse.row_sums, &dense.row_sums());
        assert!(rel <= 1e-12, "eps {eps} {domain:?} row sums: {rel:e}");
        let o = sparse.objective;
        assert!((o.transport + o.entropy + o.source_kl + o.target_kl - o.total).abs() < 1e-9);
    }
}

#[test]
fn outputs_are_byte_identical_across_thread_counts() {
    // Large enough that rayon splits the rows and columns.
    let (rows, cols, k) = (6000, 3000, 16);
    let cost = dense_cost(rows, cols, 9);
    let columns: Vec<Vec<(u32, f64)>> = (0..cols)
        .map(|j| {
            let mut c: Vec<(u32, f64)> =
                (0..rows).map(|i| (i as u32, cost[i * cols + j])).collect();
            c.sort_by(|x, y| x.1.total_cmp(&y.1));
            c.truncate(k);
            c
        })
        .collect();
    let mut touched: Vec<bool> = vec![false; rows];
    columns
        .iter()
        .flatten()
        .for_each(|e| touched[e.0 as usize] = true);
    let index: Vec<u32> = touched
        .iter()
        .scan(0u32, |n, &t| {
            let i = *n;
            *n += u32::from(t);
            Some(i)
        })
        .collect();
    let columns: Vec<Vec<(u32, f64)>> = columns
        .into_iter()
        .map(|c| c.into_iter().map(|(i, x)| (index[i as usize], x)).collect())
        .collect();
    let used = touched.iter().filter(|t| **t).count();
    let g = SparseCost::from_columns(used, columns).unwrap();
    let (a, b) = (vec![1.0; used], vec![1.0; cols]);
    for domain in [Domain::Plain, Domain::Log] {
        let p = UotParams {
            eps: 0.1,
            domain,
            ..UotParams::DEFAULT
        };
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| solve_sparse(&g, &a, &b, &p, None).unwrap())
        };
        let bytes = |x: &[f64]| x.iter().map(|v| v.to_bits()).collect::<Vec<u64>>();
        let (one, two) = (run(1), run(2));
        assert!(one.converged);
        assert_eq!(bytes(&one.plan), bytes(&two.plan), "{domain:?}");
        assert_eq!(bytes(&one.row_sums), bytes(&two.row_sums), "{domain:?}");
        assert_eq!(one, two);
        // A warm start from the converged potentials stops almost at once, at the same plan.
        let warm = solve_sparse(&g, &a, &b, &p, Some((&one.alpha, &one.beta))).unwrap();
        assert!(
            warm.converged && warm.iterations < one.iterations / 4,
            "{}",
            warm.iterations
        );
        assert!(max_rel(&warm.row_sums, &one.row_sums) < 1e-4);
    }
}

#[test]
fn bad_graphs_and_parameters_are_errors() {
    let p = UotParams::DEFAULT;
    let err = |r: ptsel::Result<SparseCost>| r.unwrap_err().to_string();
    assert!(err(SparseCost::from_columns(0, vec![vec![(0, 1.0)]])).contains("rows"));
    assert!(err(SparseCost::from_columns(2, vec![vec![(0, 1.0)], vec![]])).contains("column 1"));
    assert!(err(SparseCost::from_columns(2, vec![vec![(0, 1.0)]])).contains("row 1"));
    assert!(err(SparseCost::from_columns(1, vec![vec![(0, 1.0), (0, 2.0)]])).contains("bad edge"));
    assert!(err(SparseCost::from_columns(1, vec![vec![(3, 1.0)]])).contains("bad edge"));
    assert!(err(SparseCost::from_columns(1, vec![vec![(0, f64::NAN)]])).contains("bad edge"));
    let g = SparseCost::from_columns(2, vec![vec![(0, 1.0), (1, 2.0)]]).unwrap();
    assert!(solve_sparse(&g, &[1.0], &[1.0], &p, None).is_err());
    assert!(solve_sparse(&g, &[1.0, -1.0], &[1.0], &p, None).is_err());
    let zero_eps = UotParams { eps: 0.0, ..p };
    assert!(solve_sparse(&g, &[1.0, 1.0], &[1.0], &zero_eps, None).is_err());
    assert!(solve_sparse(&g, &[1.0, 1.0], &[1.0], &p, Some((&[0.0], &[0.0]))).is_err());
    // The plain kernel refuses where it underflows; auto then takes the log domain.
    let far = SparseCost::from_columns(2, vec![vec![(0, 800.0), (1, 900.0)]]).unwrap();
    let plain = UotParams {
        domain: Domain::Plain,
        ..p
    };
    assert!(solve_sparse(&far, &[1.0, 1.0], &[1.0], &plain, None).is_err());
    let auto = solve_sparse(&far, &[1.0, 1.0], &[1.0], &p, None).unwrap();
    assert!(auto.log_domain && auto.plan.iter().all(|x| x.is_finite()));
}
