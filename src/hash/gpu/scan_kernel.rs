//! Generates the per-nonce body of the sha256d scan kernel by partial evaluation. Every value
//! is tracked symbolically as `literal + job constants + per-nonce variables`, so that:
//!
//! * what is known when the kernel is generated (padding, zero words, bit lengths, K, the IV of
//!   the second hash) folds into one literal per sum, and adding a zero word disappears;
//! * what is the same for every nonce of a job (the midstate, the state after rounds 0..4 of
//!   the header's second block, W16, W17 and the nonce-free parts of later words) becomes one
//!   slot of the kernel's parameters, filled on the host once per job ([`ScanKernel::job_words`]);
//! * only what depends on the nonce is computed per nonce, and nothing the test does not read:
//!   the second hash stops after round 60 (`H7 = IV7 + e61`), and only a nonce whose top word
//!   passes finishes rounds 61..64 and the full 256-bit comparison.
//!
//! The host part reuses the CPU path's precomputation (`ScalarJob`, the `W3 = 0` trick).

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::OnceLock;

use crate::hash::cpu::sha256d::{ScalarJob, DIGEST_BITS, HEADER_BITS, IV, K, PAD};

/// The hand-written part: bindings, the nonce loop and the full 256-bit comparison.
const TEMPLATE: &str = include_str!("../../../shaders/sha256d_scan.wgsl");

/// The functions of a SHA-256 round, evaluated on the host or emitted as WGSL calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Func {
    Bswap,
    Bsig0,
    Bsig1,
    Ssig0,
    Ssig1,
    Ch,
    Maj,
}

impl Func {
    fn wgsl(self) -> &'static str {
        match self {
            Self::Bswap => "bswap",
            Self::Bsig0 => "bsig0",
            Self::Bsig1 => "bsig1",
            Self::Ssig0 => "ssig0",
            Self::Ssig1 => "ssig1",
            Self::Ch => "ch",
            Self::Maj => "maj",
        }
    }

    fn eval(self, x: &[u32]) -> u32 {
        match self {
            Self::Bswap => x[0].swap_bytes(),
            Self::Bsig0 => x[0].rotate_right(2) ^ x[0].rotate_right(13) ^ x[0].rotate_right(22),
            Self::Bsig1 => x[0].rotate_right(6) ^ x[0].rotate_right(11) ^ x[0].rotate_right(25),
            Self::Ssig0 => x[0].rotate_right(7) ^ x[0].rotate_right(18) ^ (x[0] >> 3),
            Self::Ssig1 => x[0].rotate_right(17) ^ x[0].rotate_right(19) ^ (x[0] >> 10),
            Self::Ch => x[2] ^ (x[0] & (x[1] ^ x[2])),
            Self::Maj => (x[0] & x[1]) | (x[2] & (x[0] | x[1])),
        }
    }
}

/// A value that is the same for every nonce of a job, as the host computes it.
#[derive(Clone, Debug, PartialEq, Eq)]
enum JobExpr {
    /// State word after rounds 0..4 of the header's second block, computed with `W3 = 0`.
    State4(usize),
    /// Word of that block's schedule with `W3 = 0` (0..3, 16 and 17 do not involve the nonce).
    Schedule(usize),
    Midstate(usize),
    Sum(u32, Vec<JobExpr>),
    Call(Func, Vec<JobExpr>),
}

impl JobExpr {
    /// `lit + terms`, flattened, so equal sums share one uniform slot.
    fn sum(lit: u32, terms: &[JobExpr]) -> Self {
        let mut lit = lit;
        let mut flat = Vec::new();
        for term in terms {
            match term {
                Self::Sum(l, inner) => {
                    lit = lit.wrapping_add(*l);
                    flat.extend(inner.iter().cloned());
                }
                other => flat.push(other.clone()),
            }
        }
        if lit == 0 && flat.len() == 1 {
            return flat.remove(0);
        }
        Self::Sum(lit, flat)
    }

    fn eval(&self, job: &ScalarJob) -> u32 {
        match self {
            Self::State4(i) => job.state4[*i],
            Self::Schedule(i) => job.schedule[*i],
            Self::Midstate(i) => job.midstate[*i],
            Self::Sum(lit, terms) => terms
                .iter()
                .fold(*lit, |acc, t| acc.wrapping_add(t.eval(job))),
            Self::Call(f, args) => {
                let args: Vec<u32> = args.iter().map(|a| a.eval(job)).collect();
                f.eval(&args)
            }
        }
    }
}

/// `lit + sum(job) + sum(vars)`; `vars` are indices of emitted statements.
#[derive(Clone, Debug, Default)]
struct Sym {
    lit: u32,
    job: Vec<JobExpr>,
    vars: Vec<usize>,
}

impl Sym {
    fn lit(lit: u32) -> Self {
        Self {
            lit,
            ..Self::default()
        }
    }

    fn job(expr: JobExpr) -> Self {
        Self {
            job: vec![expr],
            ..Self::default()
        }
    }

    fn var(index: usize) -> Self {
        Self {
            vars: vec![index],
            ..Self::default()
        }
    }

    fn sum(parts: &[&Sym]) -> Self {
        let mut out = Self::default();
        for part in parts {
            out.lit = out.lit.wrapping_add(part.lit);
            out.job.extend(part.job.iter().cloned());
            out.vars.extend(part.vars.iter().copied());
        }
        out
    }

    /// The job-constant part, when the value has no per-nonce part.
    fn as_job(&self) -> Option<JobExpr> {
        self.vars
            .is_empty()
            .then(|| JobExpr::sum(self.lit, &self.job))
    }
}

/// One `let` of the generated function.
struct Stmt {
    name: String,
    expr: String,
    deps: Vec<usize>,
}

/// Emits statements and collects the job constants they read.
#[derive(Default)]
struct Builder {
    stmts: Vec<Stmt>,
    slots: Vec<JobExpr>,
}

impl Builder {
    fn emit(&mut self, hint: &str, expr: String, deps: Vec<usize>) -> Sym {
        let index = self.stmts.len();
        self.stmts.push(Stmt {
            name: format!("{hint}_{index}"),
            expr,
            deps,
        });
        Sym::var(index)
    }

    fn slot(&mut self, expr: JobExpr) -> String {
        let index = match self.slots.iter().position(|s| *s == expr) {
            Some(index) => index,
            None => {
                self.slots.push(expr);
                self.slots.len() - 1
            }
        };
        format!("job[{}].{}", index / 4, ["x", "y", "z", "w"][index % 4])
    }

    /// The WGSL expression of `value` and the statements it reads.
    fn expr(&mut self, value: &Sym) -> (String, Vec<usize>) {
        let mut terms: Vec<String> = value
            .vars
            .iter()
            .map(|&v| self.stmts[v].name.clone())
            .collect();
        if !value.job.is_empty() {
            let slot = self.slot(JobExpr::sum(value.lit, &value.job));
            terms.push(slot);
        } else if value.lit != 0 || terms.is_empty() {
            terms.push(format!("0x{:08x}u", value.lit));
        }
        (terms.join(" + "), value.vars.clone())
    }

    /// `f(args)`: folded when no argument depends on the nonce, emitted otherwise.
    fn call(&mut self, f: Func, args: &[&Sym], hint: &str) -> Sym {
        let consts: Option<Vec<JobExpr>> = args.iter().map(|a| a.as_job()).collect();
        if let Some(consts) = consts {
            if args.iter().all(|a| a.job.is_empty()) {
                let lits: Vec<u32> = args.iter().map(|a| a.lit).collect();
                return Sym::lit(f.eval(&lits));
            }
            return Sym::job(JobExpr::Call(f, consts));
        }
        let mut texts = Vec::new();
        let mut deps = Vec::new();
        for arg in args {
            let (text, arg_deps) = self.expr(arg);
            texts.push(text);
            deps.extend(arg_deps);
        }
        self.emit(hint, format!("{}({})", f.wgsl(), texts.join(", ")), deps)
    }

    /// One variable for a value read more than once (registers, schedule words).
    fn bind(&mut self, value: Sym, hint: &str) -> Sym {
        let single = value.vars.len() == 1 && value.lit == 0 && value.job.is_empty();
        if value.vars.is_empty() || single {
            return value;
        }
        let (text, deps) = self.expr(&value);
        self.emit(hint, text, deps)
    }

    /// The message schedule word `t >= 16` from the earlier ones.
    fn schedule(&mut self, w: &[Sym], t: usize, hint: &str) -> Sym {
        let s1 = self.call(Func::Ssig1, &[&w[t - 2]], "s1");
        let s0 = self.call(Func::Ssig0, &[&w[t - 15]], "s0");
        let word = Sym::sum(&[&s1, &w[t - 7], &s0, &w[t - 16]]);
        self.bind(word, &format!("{hint}{t}"))
    }

    /// SHA-256 round `t` on `s` (`a..h`).
    fn round(&mut self, s: &mut [Sym; 8], t: usize, w: &Sym, hint: &str) {
        let [a, b, c, d, e, f, g, h] = s.clone();
        let s1 = self.call(Func::Bsig1, &[&e], "S1");
        let ch = self.call(Func::Ch, &[&e, &f, &g], "ch");
        let t1 = Sym::sum(&[&h, &s1, &ch, &Sym::lit(K[t]), w]);
        // T1 goes into both a and e: one variable unless it is a single term plus constants,
        // which then fold into the constants of a and e.
        let t1 = if t1.vars.len() > 1 {
            self.bind(t1, "t1")
        } else {
            t1
        };
        let s0 = self.call(Func::Bsig0, &[&a], "S0");
        let maj = self.call(Func::Maj, &[&a, &b, &c], "maj");
        let new_a = self.bind(Sym::sum(&[&t1, &s0, &maj]), &format!("{hint}a{}", t + 1));
        let new_e = self.bind(Sym::sum(&[&d, &t1]), &format!("{hint}e{}", t + 1));
        *s = [new_a, a, b, c, new_e, e, f, g];
    }

    /// Indices of the statements `roots` need, directly or not.
    fn needed(&self, roots: &[usize]) -> HashSet<usize> {
        let mut live = HashSet::new();
        let mut stack = roots.to_vec();
        while let Some(i) = stack.pop() {
            if live.insert(i) {
                stack.extend(self.stmts[i].deps.iter().copied());
            }
        }
        live
    }

    fn write_stmts(&self, src: &mut String, pick: impl Fn(usize) -> bool) {
        for (i, stmt) in self.stmts.iter().enumerate() {
            if pick(i) {
                let _ = writeln!(src, "    let {} = {};", stmt.name, stmt.expr);
            }
        }
    }
}

/// The generated scan kernel and the job constants its parameters carry.
pub struct ScanKernel {
    source: String,
    slots: Vec<JobExpr>,
}

impl ScanKernel {
    /// The kernel, generated on first use and shared by every device.
    pub fn get() -> &'static Self {
        static KERNEL: OnceLock<ScanKernel> = OnceLock::new();
        KERNEL.get_or_init(Self::generate)
    }

    /// Generates the kernel.
    #[must_use]
    fn generate() -> Self {
        let mut b = Builder::default();
        // The parameter, never emitted as a `let`.
        b.stmts.push(Stmt {
            name: "nonce".into(),
            expr: String::new(),
            deps: Vec::new(),
        });
        let w3 = b.call(Func::Bswap, &[&Sym::var(0)], "w3");

        // First hash, second block: rounds 0..4 ran on the host with W3 = 0, and W3 enters
        // round 3 only through T1, which is added to both a and e.
        let mut w: Vec<Sym> = (0..3).map(|i| Sym::job(JobExpr::Schedule(i))).collect();
        w.push(w3.clone());
        w.push(Sym::lit(PAD));
        w.extend((5..15).map(|_| Sym::lit(0)));
        w.push(Sym::lit(HEADER_BITS));
        w.push(Sym::job(JobExpr::Schedule(16)));
        w.push(Sym::job(JobExpr::Schedule(17)));
        let mut s: [Sym; 8] = std::array::from_fn(|i| Sym::job(JobExpr::State4(i)));
        s[0] = b.bind(Sym::sum(&[&s[0], &w3]), "a4");
        s[4] = b.bind(Sym::sum(&[&s[4], &w3]), "e4");
        // Each schedule word just before its round: statements keep this order, and computing
        // the whole schedule first keeps 46 words live at once (spills on lavapipe, fewer
        // threads in flight on a real GPU).
        for t in 4..64 {
            if t == w.len() {
                let word = b.schedule(&w, t, "w");
                w.push(word);
            }
            b.round(&mut s, t, &w[t].clone(), "");
        }

        // Second hash: the first hash's digest, padding and the 256-bit length.
        let mut w: Vec<Sym> = s
            .iter()
            .enumerate()
            .map(|(i, x)| {
                let digest = Sym::sum(&[x, &Sym::job(JobExpr::Midstate(i))]);
                b.bind(digest, &format!("h{i}"))
            })
            .collect();
        w.push(Sym::lit(PAD));
        w.extend((9..15).map(|_| Sym::lit(0)));
        w.push(Sym::lit(DIGEST_BITS));
        let mut s: [Sym; 8] = IV.map(Sym::lit);
        let mut top = Sym::default();
        for t in 0..64 {
            if t == w.len() {
                let word = b.schedule(&w, t, "v");
                w.push(word);
            }
            b.round(&mut s, t, &w[t].clone(), "x");
            if t == 60 {
                // H7 = IV7 + h64 and h64 = e61: the test needs nothing of rounds 61..64.
                top = b.bind(Sym::sum(&[&s[4], &Sym::lit(IV[7])]), "top");
            }
        }
        let digest: Vec<Sym> = s
            .iter()
            .zip(IV)
            .enumerate()
            .map(|(i, (x, iv))| b.bind(Sym::sum(&[x, &Sym::lit(iv)]), &format!("d{i}")))
            .collect();
        let (top_text, top_deps) = b.expr(&top);
        let digest_texts: Vec<String> = digest.iter().map(|d| b.expr(d).0).collect();

        let main = b.needed(&top_deps);
        let all_roots: Vec<usize> = digest.iter().flat_map(|d| d.vars.clone()).collect();
        let late = b.needed(&all_roots);
        let mut src = String::from(
            "// Generated by src/hash/gpu/scan_kernel.rs.\n\
             fn sha256d_meets_target(nonce: u32, job: JobConstants, top_target: u32) -> bool {\n",
        );
        b.write_stmts(&mut src, |i| i > 0 && main.contains(&i));
        let _ = writeln!(
            src,
            "    if bswap({top_text}) > top_target {{\n        return false;\n    }}"
        );
        b.write_stmts(&mut src, |i| {
            i > 0 && late.contains(&i) && !main.contains(&i)
        });
        let _ = writeln!(
            src,
            "    return meets_target(array<u32, 8>({}));\n}}\n",
            digest_texts.join(", ")
        );
        let job_vec4s = b.slots.len().div_ceil(4).max(1); // as in `job_word_count`
        let _ = writeln!(
            src,
            "alias JobConstants = array<vec4<u32>, {job_vec4s}>;\n\n\
             struct ScanParams {{\n    // Job constants, computed on the host once per job.\n    \
             job: JobConstants,\n    \
             // Little-endian 32-bit words, [1].w most significant.\n    \
             target_words: array<vec4<u32>, 2>,\n    \
             // x: nonces in this dispatch, y: nonces per invocation, z: capacity of \
             `found.nonces`, w: first nonce of this dispatch.\n    sizes: vec4<u32>,\n}}"
        );
        let mut source = super::wgsl::prelude().to_string();
        source.push_str(TEMPLATE);
        source.push_str(&src);
        Self {
            source,
            slots: b.slots,
        }
    }

    /// The whole WGSL module.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The length of `ScanParams.job` in words (a multiple of 4).
    #[must_use]
    pub fn job_word_count(&self) -> usize {
        self.slots.len().div_ceil(4).max(1) * 4
    }

    /// Words of `ScanParams.job` for a job.
    #[must_use]
    pub fn job_words(&self, midstate: &[u32; 8], tail: &[u32; 3]) -> Vec<u32> {
        let job = ScalarJob::new(midstate, tail);
        let mut words: Vec<u32> = self.slots.iter().map(|s| s.eval(&job)).collect();
        words.resize(self.job_word_count(), 0);
        words
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SPIR-V instructions of `source`'s `main` as naga writes them for wgpu's Vulkan
    /// back end, with its runtime checks (index clamping, loop bounding) or without.
    fn spirv_instructions(source: &str, runtime_checks: bool) -> usize {
        use naga::back::spv;
        use naga::proc::{BoundsCheckPolicies, BoundsCheckPolicy};
        let module = naga::front::wgsl::parse_str(source).expect("valid WGSL");
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .expect("valid module");
        let policy = if runtime_checks {
            BoundsCheckPolicy::Restrict
        } else {
            BoundsCheckPolicy::Unchecked
        };
        let options = spv::Options {
            // No debug names: the count must not depend on the build profile.
            flags: spv::WriterFlags::empty(),
            bounds_check_policies: BoundsCheckPolicies {
                index: policy,
                buffer: policy,
                image_load: policy,
                binding_array: BoundsCheckPolicy::Unchecked,
            },
            force_loop_bounding: runtime_checks,
            ..spv::Options::default()
        };
        let pipeline = spv::PipelineOptions {
            shader_stage: naga::ShaderStage::Compute,
            entry_point: "main".into(),
        };
        let words = spv::write_vec(&module, &info, &options, Some(&pipeline)).expect("SPIR-V");
        // After the 5-word header every instruction starts with (word count << 16) | opcode.
        let mut count = 0;
        let mut at = 5;
        while at < words.len() {
            count += 1;
            at += (words[at] >> 16).max(1) as usize;
        }
        count
    }

    /// Just above the generated kernel's 2,443, so that a regression fails. The kernel before
    /// it (a 64-round compression function called twice, runtime checks on) had 5,197.
    const SPIRV_BOUND: usize = 2_500;

    #[test]
    fn scan_kernel_spirv_stays_small() {
        let source = ScanKernel::get().source().to_owned();
        let unchecked = spirv_instructions(&source, false);
        let checked = spirv_instructions(&source, true);
        println!(
            "sha256d_scan: {unchecked} SPIR-V instructions as compiled (runtime checks off), \
             {checked} with wgpu's runtime checks"
        );
        assert!(unchecked < SPIRV_BOUND, "{unchecked} instructions");
    }

    #[test]
    fn job_words_fill_whole_vec4s() {
        let kernel = ScanKernel::get();
        let words = kernel.job_words(&IV, &[1, 2, 3]);
        assert_eq!(words.len(), kernel.job_word_count());
        assert_eq!(words.len() % 4, 0);
    }
}
