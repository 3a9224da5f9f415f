use ringshift_model::{Config, Rules, check};

#[test]
fn explore_small_new() {
    let r = check(Config::small(Rules::NEW));
    println!("{r}");
}
