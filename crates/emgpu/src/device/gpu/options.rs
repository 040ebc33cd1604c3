//! Options of the GPU engines and of a GPU context: tuning knobs that tests, benchmarks and the
//! command line set. The library reads no environment variable; the edges (the `emgpu` binary,
//! the tests) read `EMGPU_GPU_VARIANT`, `EMGPU_GPU_RESIDENT_BYTES` and
//! `EMGPU_SHADER_BOUNDS_CHECKS` and put them here.
//!
//! [`GpuVariant`] names forms of the Gaussian-mixture kernels; it lives here, with the options
//! that carry it, so that this shared machinery does not import model code (the Gaussian-mixture
//! GPU module re-exports it).

use crate::device::EngineOptions;
use crate::error::{Error, Result};

/// Options of the GPU engine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuEngineOptions {
    /// Rows per chunk (capped by the device's binding limits). `None`: as large as the device
    /// allows when resident, 256 MiB of rows when streamed.
    pub chunk_rows: Option<usize>,
    /// `Some(true)`: keep the data on the GPU (one buffer per chunk); `Some(false)`: stream the
    /// chunks at every E-step through one buffer. `None`: resident when the data fits
    /// `resident_budget`.
    pub resident: Option<bool>,
    /// Bytes of data (as f32) kept on the GPU when `resident` is `None`. `None`: 4 GiB on
    /// hardware adapters and 1 GiB on software ones. (The command line and the tests read it
    /// from `EMGPU_GPU_RESIDENT_BYTES`.)
    pub resident_budget: Option<u64>,
    /// Most chunks whose statistics are read back together (one readback per group of chunks).
    /// `None`: all of them, within 32 MiB.
    pub readback_chunks: Option<usize>,
    /// Points per tile of the kernels (a power of two from 4 to 256; shrunk to fit the
    /// adapter's workgroup memory). `None`: 64 for the Gaussian-mixture kernels, 256 for
    /// k-means. A tuning knob for benchmarks.
    pub tile_points: Option<usize>,
    /// Points per invocation of the E-step kernels' log-density loop: 4 (default; each parameter
    /// read serves four points) or 2 (half the registers). A tuning knob for benchmarks.
    pub e_step_points: Option<usize>,
    /// Minimum number of workgroups of a statistics dispatch (when there are that many tiles).
    /// `None`: 1024, enough to fill a large GPU. A tuning knob for benchmarks.
    pub min_workgroups: Option<usize>,
    /// Which forms of the Gaussian-mixture kernels to build. `None`:
    /// [`GpuVariant::recommended`]. A tuning knob for benchmarks (the command line and the tests
    /// read it from `EMGPU_GPU_VARIANT`, parsed by [`GpuVariant`]'s `FromStr`).
    pub variant: Option<GpuVariant>,
    /// Mini-batches of stepwise EM: chunks never straddle a multiple of this many rows, so that
    /// every mini-batch is a set of whole chunks (one chunk when it fits a binding). `None`:
    /// chunks as above.
    pub batch_rows: Option<usize>,
}

/// Forms of the Gaussian-mixture kernels (tuning variants; every one computes the same
/// statistics and passes the same tests). Written as a `+`-separated list of flags, `base` for
/// none: `lse`, `sg`, `stage`, `red`, and `tN` / `pN` for the tile and the points per E-step
/// invocation (e.g. `stage+sg+red`, `stage+sg+p4`, `sg+t128`); see each field. Where the device
/// or the shape cannot run a flag, the engine uses the next plainer form
/// ([`GpuGmmEngine::kernel_variant`](crate::models::gmm::gpu::GpuGmmEngine::kernel_variant)
/// says what ran).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct GpuVariant {
    /// `lse`: the log-sum-exp of each point on up to 4 invocations (partial maxima and sums
    /// exchanged through workgroup memory, two more barriers per tile) instead of one
    /// invocation per point walking all K components while the rest of the workgroup waits.
    pub parallel_lse: bool,
    /// `sg`: as `lse`, exchanging with subgroup shuffles (no workgroup memory, no extra
    /// barrier); `lse` where the device has no subgroup operations.
    pub subgroups: bool,
    /// `stage` (full and tied only): √r·(x − s) of every point and component staged in
    /// workgroup memory once per tile, so that the second-moment blocks are plain outer
    /// products (two 16-byte loads per 16 FMAs); tiles of 32 points.
    pub staged: bool,
    /// `red`: the reduction pass with 16 columns × 16 lanes per workgroup and four loads in
    /// flight per invocation (instead of 32 × 8 and one).
    pub wide_reduce: bool,
    /// `tN`: points per tile, as [`GpuEngineOptions::tile_points`] (which wins when set).
    pub tile_points: Option<u16>,
    /// `pN` (2 or 4): points per E-step invocation, as [`GpuEngineOptions::e_step_points`]
    /// (which wins when set).
    pub e_step_points: Option<u8>,
}

impl std::str::FromStr for GpuVariant {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let mut v = GpuVariant::default();
        for flag in s.split(['+', ',']).map(str::trim).filter(|f| !f.is_empty()) {
            match flag {
                "base" => {}
                "lse" => v.parallel_lse = true,
                "sg" => v.subgroups = true,
                "stage" => v.staged = true,
                "red" => v.wide_reduce = true,
                f if f.len() > 1
                    && f.starts_with('t')
                    && f[1..].parse::<u16>().is_ok_and(|t| (4..=256).contains(&t)) =>
                {
                    v.tile_points = f[1..].parse().ok();
                }
                "p2" => v.e_step_points = Some(2),
                "p4" => v.e_step_points = Some(4),
                other => {
                    return Err(Error::param(format!(
                        "unknown GPU kernel variant flag {other:?} in {s:?}; use base or a '+'-separated list of lse, sg, stage, red, t4..t256, p2, p4"
                    )));
                }
            }
        }
        Ok(v)
    }
}

impl std::fmt::Display for GpuVariant {
    /// The flags joined by `+` (`base` for none), as `FromStr` reads them.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut flags: Vec<String> = [
            (self.parallel_lse, "lse"),
            (self.subgroups, "sg"),
            (self.staged, "stage"),
            (self.wide_reduce, "red"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, name)| name.to_string())
        .collect();
        flags.extend(self.tile_points.map(|t| format!("t{t}")));
        flags.extend(self.e_step_points.map(|p| format!("p{p}")));
        if flags.is_empty() {
            f.write_str("base")
        } else {
            f.write_str(&flags.join("+"))
        }
    }
}

impl GpuVariant {
    /// What runs when nothing is asked for: `sg` (the log-sum-exp split over subgroup lanes;
    /// `lse` where the device has no subgroups). On an NVIDIA H100 (1M points, D = K = 16) it took
    /// the E-step from 1.32–1.35 ms to 1.24 ms (full) and from 0.45–0.47 ms to 0.35 ms (diag);
    /// see docs/gpu_tuning.md. [`GpuVariant::default`] is `base`, the plain kernels.
    pub fn recommended() -> Self {
        Self {
            subgroups: true,
            ..Self::default()
        }
    }
}

impl From<EngineOptions> for GpuEngineOptions {
    /// `EngineOptions::chunk_rows` smaller than N means streamed chunks of that size.
    fn from(o: EngineOptions) -> Self {
        Self {
            chunk_rows: o.chunk_rows,
            resident: o.chunk_rows.map(|_| false),
            resident_budget: None,
            readback_chunks: None,
            tile_points: None,
            e_step_points: None,
            min_workgroups: None,
            variant: None,
            batch_rows: None,
        }
    }
}

/// Options of a [`GpuContext`](super::GpuContext): what every kernel built on it and every
/// engine built on it start from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuContextOptions {
    /// Compile the kernels with naga's bounds checks on every dynamic index (a debugging aid;
    /// off by default: every index of the kernels is in bounds by construction, and the clamps
    /// cost about 15% of the E-step on an H100). The command line and the tests set it from
    /// `EMGPU_SHADER_BOUNDS_CHECKS=1`.
    pub shader_bounds_checks: bool,
    /// Defaults of the engines built on the context: a field an engine's own options leave
    /// `None` is taken from here ([`GpuEngineOptions::or`]).
    pub engine_defaults: GpuEngineOptions,
}

impl GpuEngineOptions {
    /// These options, with every field that is `None` taken from `defaults`.
    pub fn or(self, defaults: &GpuEngineOptions) -> Self {
        Self {
            chunk_rows: self.chunk_rows.or(defaults.chunk_rows),
            resident: self.resident.or(defaults.resident),
            resident_budget: self.resident_budget.or(defaults.resident_budget),
            readback_chunks: self.readback_chunks.or(defaults.readback_chunks),
            tile_points: self.tile_points.or(defaults.tile_points),
            e_step_points: self.e_step_points.or(defaults.e_step_points),
            min_workgroups: self.min_workgroups.or(defaults.min_workgroups),
            variant: self.variant.or(defaults.variant),
            batch_rows: self.batch_rows.or(defaults.batch_rows),
        }
    }

    /// The kernel variant to build: `variant`, else [`GpuVariant::recommended`].
    pub fn variant_or_recommended(&self) -> GpuVariant {
        self.variant.unwrap_or_else(GpuVariant::recommended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_parse_print_and_reject_unknown_flags() {
        let v: GpuVariant = "stage+sg+red".parse().unwrap();
        assert!(v.staged && v.subgroups && v.wide_reduce && !v.parallel_lse);
        assert_eq!(v.to_string(), "sg+stage+red");
        assert_eq!("base".parse::<GpuVariant>().unwrap(), GpuVariant::default());
        assert_eq!("".parse::<GpuVariant>().unwrap(), GpuVariant::default());
        assert_eq!(GpuVariant::default().to_string(), "base");
        let v: GpuVariant = "lse, t128 ,p2".parse().unwrap();
        assert_eq!(
            v,
            GpuVariant {
                parallel_lse: true,
                tile_points: Some(128),
                e_step_points: Some(2),
                ..Default::default()
            }
        );
        assert_eq!(v.to_string().parse::<GpuVariant>().unwrap(), v);
        for bad in ["stage+fast", "t3", "t512", "p3", "tx"] {
            assert!(
                matches!(bad.parse::<GpuVariant>(), Err(Error::InvalidParameter(m)) if m.contains("lse, sg, stage")),
                "{bad}"
            );
        }
    }
}
