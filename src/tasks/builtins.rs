//! The builtin task files (generated list; keep in sync with tasks/*.toml).

macro_rules! files {
    ($($n:literal),* $(,)?) => {
        &[$(($n, include_str!(concat!("../../tasks/", $n, ".toml")))),*]
    };
}

pub const FILES: &[(&str, &str)] = files![
    "arc_challenge",
    "arc_easy",
    "boolq",
    "hellaswag",
    "openbookqa",
    "piqa",
    "winogrande",
    "truthfulqa_mc",
    "agieval_aqua_rat",
    "agieval_logiqa_en",
    "agieval_lsat_ar",
    "agieval_lsat_lr",
    "agieval_lsat_rc",
    "agieval_sat_en",
    "agieval_sat_en_without_passage",
    "agieval_sat_math",
    "bigbench_causal_judgement",
    "bigbench_date_understanding",
    "bigbench_disambiguation_qa",
    "bigbench_geometric_shapes",
    "bigbench_logical_deduction_five_objects",
    "bigbench_logical_deduction_seven_objects",
    "bigbench_logical_deduction_three_objects",
    "bigbench_movie_recommendation",
    "bigbench_navigate",
    "bigbench_reasoning_about_colored_objects",
    "bigbench_ruin_names",
    "bigbench_salient_translation_error_detection",
    "bigbench_snarks",
    "bigbench_sports_understanding",
    "bigbench_temporal_sequences",
    "bigbench_tracking_shuffled_objects_five_objects",
    "bigbench_tracking_shuffled_objects_seven_objects",
    "bigbench_tracking_shuffled_objects_three_objects",
];
