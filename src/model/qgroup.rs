//! Quantized weights in groups of [`GROUP`] rows for the AVX-512 VNNI kernels.
//!
//! llama.cpp's x86 dot products (ggml's Q4_1 × Q8_1, tinyBLAS's Q8_0 × Q8_0) accumulate every dot
//! in eight f32 lanes, lane `l` holding the integer sum of quants `4l..4l + 4` of each block:
//! `acc[l] = fma(dw·dx, sum_l, acc[l])` block after block, then `hsum_float_8`. Kernels that keep
//! one dot's eight lanes in one register pay a scale product and an unpack per dot and block, and
//! a horizontal sum per dot. Here a register holds *one* lane of sixteen weight rows instead:
//! block `b` of a group stores, for every lane, the four quant bytes of each of the sixteen rows
//! side by side, so one `vpdpbusd` with the activation's four bytes broadcast gives that lane's
//! sums for sixteen dots, one multiply gives their sixteen scale products, and the lanes reduce
//! element-wise in `hsum_float_8`'s order. Same integers, same float operations in the same order:
//! the same bits as llama.cpp.

use super::qmatmul::{block_isa, Isa};
use rayon::prelude::*;

/// Weight rows per group.
pub(super) const GROUP: usize = 16;
/// Activation rows per pass over a group (a group kernel's `K`: eight accumulators each).
pub(super) const GROUP_A: usize = 3;

/// A group kernel: the dots of one group's `bpr` blocks with the `K ≤ GROUP_A` activation rows
/// of `a`, `out[i][r]` (rows `K..GROUP_A` zero).
#[cfg(target_arch = "x86_64")]
pub(super) type GroupFn<G, A> = unsafe fn(&[G], &[A], usize) -> [[f32; GROUP]; GROUP_A];

/// A dot of one weight row's blocks with one activation row's.
#[cfg(target_arch = "x86_64")]
pub(super) type RowDot<W, A> = unsafe fn(&[W], [&[A]; 1]) -> [f32; 1];

/// A block format with a group layout and its VNNI kernels.
pub(super) trait GroupLayout: Copy + Send + Sync + 'static {
    /// One row's block in the row layout (what the AVX2 and portable kernels read).
    type Row: Copy + Send + Sync;
    /// An activation block.
    type Act: Sync;
    /// Block `b` of sixteen rows as a group, `row(r)` giving row `r`'s.
    fn group(row: impl Fn(usize) -> Self::Row) -> Self;
    /// Row `r`'s block again.
    fn row(&self, r: usize) -> Self::Row;
    /// The group kernel for `K` = 1..=[`GROUP_A`] activation rows, `[K - 1]`.
    #[cfg(target_arch = "x86_64")]
    const KERNELS: [GroupFn<Self, Self::Act>; GROUP_A];
    /// The one-row VNNI dot, for the rows after the last whole group.
    #[cfg(target_arch = "x86_64")]
    const DOT: RowDot<Self::Row, Self::Act>;
}

/// Weight rows in the layout this CPU's kernels read: whole groups of [`GROUP`] rows where it has
/// AVX-512 VNNI, the rest (every row elsewhere) row after row.
pub(super) struct GroupedRows<G: GroupLayout> {
    /// Rows `0..grouped`, `[group * bpr + b]`.
    groups: Vec<G>,
    /// Rows `grouped..rows`, block after block, row after row.
    pub(super) w: Vec<G::Row>,
    pub(super) grouped: usize,
    pub(super) rows: usize,
    pub(super) cols: usize,
}

impl<G: GroupLayout> GroupedRows<G> {
    /// The `rows` rows whose blocks `block(r * bpr + b)` gives, grouped where the CPU runs the
    /// group kernels.
    pub(super) fn new(block: impl Fn(usize) -> G::Row, rows: usize, cols: usize) -> Self {
        let bpr = cols / 32;
        let grouped = match block_isa() {
            Isa::Avx512Vnni => rows / GROUP * GROUP,
            _ => 0,
        };
        // exactly the blocks needed (a collect through flat_map would grow the vector by doubling)
        let mut groups = Vec::with_capacity(grouped / GROUP * bpr);
        for g in 0..grouped / GROUP {
            groups.extend((0..bpr).map(|b| G::group(|r| block((g * GROUP + r) * bpr + b))));
        }
        Self {
            groups,
            w: (grouped * bpr..rows * bpr).map(block).collect(),
            grouped,
            rows,
            cols,
        }
    }

    /// Block `b` of row `r` at `k = r * bpr + b`, wherever the layout keeps it.
    pub(super) fn block(&self, k: usize) -> G::Row {
        let bpr = self.cols / 32;
        let (r, b) = (k / bpr, k % bpr);
        if r >= self.grouped {
            return self.w[k - self.grouped * bpr];
        }
        self.groups[r / GROUP * bpr + b].row(r % GROUP)
    }

    /// These rows, then `other`'s (the same columns), laid out again.
    pub(super) fn join(&self, other: &Self) -> Option<Self> {
        if other.cols != self.cols {
            return None;
        }
        let mine = self.rows * self.cols / 32;
        let block = |k: usize| match k.checked_sub(mine) {
            None => self.block(k),
            Some(k) => other.block(k),
        };
        Some(Self::new(block, self.rows + other.rows, self.cols))
    }

    /// Every row's blocks, row after row.
    #[cfg(test)]
    pub(super) fn row_blocks(&self) -> Vec<G::Row> {
        (0..self.rows * self.cols / 32)
            .map(|k| self.block(k))
            .collect()
    }

    /// `out[i * rows + r]` = dot of weight row `r` and activation row `i` (`bpr` blocks of
    /// `xq`), for `n` activation rows, where some rows are grouped: tasks of one group each
    /// (sixteen weight rows, in L1 while every activation row passes over them, [`GROUP_A`] at a
    /// time), and one task for the rows after the last group.
    #[cfg(target_arch = "x86_64")]
    pub(super) fn matmul(&self, xq: &[G::Act], n: usize, out: &mut [f32]) {
        assert!(self.grouped > 0 && out.len() == self.rows * n && xq.len() * 32 >= n * self.cols);
        let (rows, bpr) = (self.rows, self.cols / 32);
        let ngroups = self.grouped / GROUP;
        let tail = usize::from(self.grouped < rows);
        let ptr = super::qmatmul::SendPtr(out.as_mut_ptr());
        (0..ngroups + tail).into_par_iter().for_each(|t| {
            let base = ptr.get();
            if t == ngroups {
                for i in 0..n {
                    for r in self.grouped..rows {
                        let w = &self.w[(r - self.grouped) * bpr..][..bpr];
                        // SAFETY: groups exist only where the CPU runs the VNNI kernels; the
                        // rows after the groups are this task's alone, and in bounds.
                        unsafe { *base.add(i * rows + r) = G::DOT(w, [&xq[i * bpr..][..bpr]])[0] };
                    }
                }
                return;
            }
            let g = &self.groups[t * bpr..(t + 1) * bpr];
            let mut i = 0;
            while i < n {
                let k = GROUP_A.min(n - i);
                // SAFETY: as above; `g` holds bpr blocks and the slice k activation rows.
                let dots = unsafe { G::KERNELS[k - 1](g, &xq[i * bpr..(i + k) * bpr], bpr) };
                for (h, d) in dots.iter().take(k).enumerate() {
                    // SAFETY: outputs t·GROUP.. + GROUP of row i + h, this task's alone.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            d.as_ptr(),
                            base.add((i + h) * rows + t * GROUP),
                            GROUP,
                        )
                    };
                }
                i += k;
            }
        });
    }
}

/// The group kernel's instances, as [`GroupLayout::KERNELS`].
macro_rules! group_fns {
    ($f:ident) => {
        [$f::<1>, $f::<2>, $f::<3>]
    };
}
pub(super) use group_fns;

/// Eight lane accumulators of each of `K` rows reduced as `hsum_float_8` (`v[l] = a[l + 4] +
/// a[l]`, then `(v0 + v2) + (v1 + v3)`), element-wise, plus `extra[i]` where given.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn lanes_reduced<const K: usize>(
    acc: &[[std::arch::x86_64::__m512; 8]; K],
    extra: Option<&[std::arch::x86_64::__m512; K]>,
) -> [[f32; GROUP]; GROUP_A] {
    use std::arch::x86_64::*;
    const { assert!(K >= 1 && K <= GROUP_A) };
    let mut out = [[0f32; GROUP]; GROUP_A];
    for (i, a) in acc.iter().enumerate() {
        let v: [__m512; 4] = std::array::from_fn(|j| _mm512_add_ps(a[j + 4], a[j]));
        let mut t = _mm512_add_ps(_mm512_add_ps(v[0], v[2]), _mm512_add_ps(v[1], v[3]));
        if let Some(e) = extra {
            t = _mm512_add_ps(t, e[i]);
        }
        _mm512_storeu_ps(out[i].as_mut_ptr(), t);
    }
    out
}
