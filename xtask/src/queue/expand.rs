//! A campaign into tasks: `queue add bench --value-sizes 16,64,1K --pipelines 1..64x2`
//! queues one task per combination (3 × 7 = 21), each carrying one value of every list.
//! This module rewrites the flags; the lists are parsed by the command's own flag
//! definitions (`cli::MatrixArgs`) and every task is validated before any is queued.

/// The most tasks one `queue add` makes.
pub const MAX_TASKS: usize = 1000;

/// One list flag and the single values it expands to.
#[derive(Clone, Debug, PartialEq)]
pub struct Axis {
    pub flag: &'static str,
    pub values: Vec<String>,
}

/// The raw values of `flag` in `args`, as `--flag V` or `--flag=V` (every occurrence).
pub fn raw_values(args: &[String], flag: &str) -> Vec<String> {
    let mut values = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == flag {
            if let Some(v) = args.get(i + 1) {
                values.push(v.clone());
            }
            i += 2;
            continue;
        }
        if let Some(v) = args[i].strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            values.push(v.to_string());
        }
        i += 1;
    }
    values
}

/// `args` without `flag` and its value, in either form.
pub fn without(args: &[String], flag: &str) -> Vec<String> {
    let mut kept = Vec::new();
    let mut i = 0;
    while i < args.len() {
        if args[i] == flag {
            i += 2;
            continue;
        }
        if !args[i]
            .strip_prefix(flag)
            .is_some_and(|r| r.starts_with('='))
        {
            kept.push(args[i].clone());
        }
        i += 1;
    }
    kept
}

/// Every combination of the axes' values, the first axis outermost: each `args` with the
/// axes' flags replaced by one value each. No axes: `args` alone.
pub fn product(args: &[String], axes: &[Axis]) -> Result<Vec<Vec<String>>, String> {
    let count = axes
        .iter()
        .try_fold(1usize, |n, a| n.checked_mul(a.values.len()))
        .unwrap_or(usize::MAX);
    if count > MAX_TASKS {
        return Err(format!(
            "{} make {count} tasks, more than {MAX_TASKS}; queue fewer values at a time",
            describe(axes)
        ));
    }
    let base = axes
        .iter()
        .fold(args.to_vec(), |a, axis| without(&a, axis.flag));
    let mut out = vec![base];
    for axis in axes {
        out = out
            .into_iter()
            .flat_map(|a| {
                axis.values.iter().map(move |v| {
                    let mut a = a.clone();
                    a.extend([axis.flag.to_string(), v.clone()]);
                    a
                })
            })
            .collect();
    }
    Ok(out)
}

/// "3 --value-sizes × 7 --pipelines".
pub fn describe(axes: &[Axis]) -> String {
    axes.iter()
        .map(|a| format!("{} {}", a.values.len(), a.flag))
        .collect::<Vec<_>>()
        .join(" × ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(text: &str) -> Vec<String> {
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn flags_in_both_forms_are_found_and_removed() {
        let a = args("--quick --pipelines 1,16 --value-sizes=16,1K --cases GET");
        assert_eq!(raw_values(&a, "--pipelines"), ["1,16"]);
        assert_eq!(raw_values(&a, "--value-sizes"), ["16,1K"]);
        assert!(raw_values(&a, "--clients").is_empty());
        assert_eq!(
            without(&without(&a, "--pipelines"), "--value-sizes"),
            args("--quick --cases GET")
        );
        // A flag whose name starts with another's is not taken for it.
        let b = args("--ref-x 1 --ref=main");
        assert_eq!(raw_values(&b, "--ref"), ["main"]);
        assert_eq!(without(&b, "--ref"), args("--ref-x 1"));
    }

    #[test]
    fn the_product_has_one_task_per_combination() {
        let axes = [
            Axis {
                flag: "--value-sizes",
                values: vec!["16".into(), "64".into(), "1024".into()],
            },
            Axis {
                flag: "--pipelines",
                values: vec!["1".into(), "16".into()],
            },
        ];
        let tasks = product(
            &args("--quick --value-sizes 16,64,1K --pipelines 1,16"),
            &axes,
        )
        .unwrap();
        assert_eq!(tasks.len(), 6);
        assert_eq!(tasks[0], args("--quick --value-sizes 16 --pipelines 1"));
        assert_eq!(tasks[1], args("--quick --value-sizes 16 --pipelines 16"));
        assert_eq!(tasks[5], args("--quick --value-sizes 1024 --pipelines 16"));
        assert_eq!(describe(&axes), "3 --value-sizes × 2 --pipelines");
        assert_eq!(product(&args("--quick"), &[]).unwrap(), [args("--quick")]);
        let big = Axis {
            flag: "--clients",
            values: (1..=40).map(|n| n.to_string()).collect(),
        };
        let e = product(&[], &[big.clone(), big]).unwrap_err();
        assert!(e.contains("1600 tasks, more than 1000"), "{e}");
    }
}
