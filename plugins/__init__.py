"""Built-in istn-sk plugins: registered through the same hooks as third-party ones."""
