//! Declaring a service's metrics once: `service::metric!(NAME: Type = register_…!(…));` makes a
//! static registered in the default registry at first use. A name registered twice is a
//! programming error: it panics at first use, naming the static.

/// A lazily registered metric; doc comments go inside, before the name:
///
/// ```
/// use prometheus::{register_int_counter, IntCounter};
/// service::metric!(
///     /// Requests served.
///     SERVED: IntCounter = register_int_counter!("doc_example_served_total", "Requests served")
/// );
/// SERVED.inc();
/// assert_eq!(SERVED.get(), 1);
/// ```
#[macro_export]
macro_rules! metric {
    ($(#[$meta:meta])* $name:ident: $ty:ty = $register:expr) => {
        $(#[$meta])*
        pub static $name: std::sync::LazyLock<$ty> =
            std::sync::LazyLock::new(|| $register.expect(concat!("register ", stringify!($name))));
    };
}

#[cfg(test)]
mod tests {
    use prometheus::{register_int_counter, IntCounter};

    metric!(
        /// A counter only this test registers.
        COUNTED: IntCounter = register_int_counter!("service_metric_macro_test_total", "test")
    );

    #[test]
    fn a_declared_metric_registers_at_first_use_and_is_scraped() {
        COUNTED.inc_by(3);
        let families = prometheus::gather();
        let found = families
            .iter()
            .find(|f| f.name() == "service_metric_macro_test_total")
            .expect("registered");
        assert_eq!(found.get_metric()[0].get_counter().get_value(), 3.0);
    }
}
