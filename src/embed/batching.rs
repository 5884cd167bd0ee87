//! Length-bucketed batching: sort by token count and cut batches by a padded-token budget, so
//! a batch's rows have nearly equal lengths and little compute goes to padding.

/// Batches of row indices. Rows are taken longest first (the most memory-hungry batch runs
/// first, so a budget that is too large fails at once rather than at the end); ties keep
/// input order, so the plan is deterministic. A batch holds as many rows as fit in
/// `budget` padded tokens (rows × longest row), and always at least one.
pub(crate) fn plan(lengths: &[usize], budget: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by(|&a, &b| lengths[b].cmp(&lengths[a]).then(a.cmp(&b)));
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut longest = 0;
    for i in order {
        if !cur.is_empty() && (cur.len() + 1) * longest.max(lengths[i]) > budget {
            out.push(std::mem::take(&mut cur));
        }
        if cur.is_empty() {
            longest = lengths[i];
        }
        cur.push(i);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Padded tokens over real tokens of a plan (1.0 = no padding).
    fn padding_ratio(lengths: &[usize], plan: &[Vec<usize>]) -> f64 {
        let real: usize = lengths.iter().sum();
        let padded: usize = plan
            .iter()
            .map(|b| b.len() * b.iter().map(|&i| lengths[i]).max().unwrap_or(0))
            .sum();
        padded as f64 / real.max(1) as f64
    }

    #[test]
    fn every_row_once_within_budget_longest_first() {
        let lengths = [5, 1, 9, 3, 3, 7, 2, 8, 1, 4];
        let p = plan(&lengths, 16);
        let mut seen: Vec<usize> = p.iter().flatten().copied().collect();
        seen.sort();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        for b in &p {
            let longest = b.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(b.len() == 1 || b.len() * longest <= 16, "{b:?}");
        }
        assert_eq!(p[0], vec![2]);
        // A row longer than the budget still gets a batch of its own.
        assert_eq!(plan(&[40, 2], 16), vec![vec![0], vec![1]]);
        assert!(padding_ratio(&lengths, &p) < 1.3);
    }
}
