//! Timing of the HMM engines on synthetic sequences (a scratch tool, like `gpu_timing`).
//!
//! `hmm_timing S T K D COV ITERS`: S sequences of T steps, K states, D features; prints the
//! mean time of one E-step on the CPU and on the GPU (after one warm-up E-step each) and how
//! many chunks the GPU split long sequences into. Defaults: `100 1000 8 4 full 5`.
use std::time::Instant;

use emgpu::device::EngineOptions;
use emgpu::device::gpu::GpuContext;
use emgpu::em::EStep;
use emgpu::models::hmm::gpu::GpuHmmEngine;
use emgpu::models::hmm::{CpuHmmEngine, FittedHmm, HmmParams};
use emgpu::{CovarianceType, Dataset};

fn main() -> emgpu::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg =
        |i: usize, default: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(default);
    let (s, t, k, d) = (arg(0, 100), arg(1, 1000), arg(2, 8), arg(3, 4));
    let cov: CovarianceType = args.get(4).map_or("full", String::as_str).parse()?;
    let iters = arg(5, 5);
    let n = s * t;
    let startprob = vec![1.0 / k as f64; k];
    let transmat: Vec<f64> = (0..k * k)
        .map(|e| {
            if e / k == e % k {
                0.9
            } else {
                0.1 / (k - 1).max(1) as f64
            }
        })
        .collect();
    let means: Vec<f64> = (0..k * d).map(|e| ((e * 7) % 11) as f64 - 5.0).collect();
    let covariances: Vec<f64> = match cov {
        CovarianceType::Full => (0..k)
            .flat_map(|_| (0..d * d).map(|e| if e / d == e % d { 1.0 } else { 0.1 }))
            .collect(),
        CovarianceType::Tied => (0..d * d)
            .map(|e| if e / d == e % d { 1.0 } else { 0.1 })
            .collect(),
        CovarianceType::Diag => vec![1.0; k * d],
        CovarianceType::Spherical => vec![1.0; k],
    };
    let params = HmmParams::new(cov, startprob, transmat, means, covariances, d)?;
    let (x, _) = FittedHmm::from_params(params.clone())?.sample(n, 1)?;
    let x: Vec<f64> = x.iter().copied().collect();
    let data = Dataset::from_slice(&x, n, d)?.with_sequence_lengths(vec![t; s])?;
    let p = params.prepare()?;
    let time = |e: &mut dyn EStep<emgpu::models::hmm::HmmModel>| -> emgpu::Result<f64> {
        e.e_step(&p)?;
        let start = Instant::now();
        for _ in 0..iters {
            e.e_step(&p)?;
        }
        Ok(start.elapsed().as_secs_f64() / iters as f64)
    };
    let mut cpu = CpuHmmEngine::new(&data, EngineOptions::default(), String::new());
    let tc = time(&mut cpu)?;
    let ctx = GpuContext::shared()?;
    let mut gpu = GpuHmmEngine::new(ctx.clone(), &data, cov, k, String::new())?;
    let tg = time(&mut gpu)?;
    println!(
        "{s} × {t} steps, K = {k}, D = {d} {cov}: CPU {:.1} ms, GPU {:.1} ms per E-step ({}; segment {} steps, {} time chunks)",
        tc * 1e3,
        tg * 1e3,
        ctx.device_label(),
        gpu.segment_len(),
        gpu.n_time_chunks()
    );
    Ok(())
}
