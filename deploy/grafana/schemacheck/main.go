// Command schemacheck checks Grafana dashboard JSON files against Grafana's dashboard
// schema, as generated into grafana-foundation-sdk: a strict decode (unknown fields,
// wrong types, missing required fields, each panel's options and each query checked
// against its plugin's schema) followed by the schema's validation constraints.
//
//	go -C deploy/grafana/schemacheck run . "$PWD"/deploy/grafana/dashboards/*.json
//
// It prints "ok PATH" for a dashboard that passes and "FAIL PATH: reason" otherwise,
// and exits 1 if any dashboard fails.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/plugins"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
)

// failure is nil for no error, including the empty error list that the SDK's generated
// code returns (a nil cog.BuildErrors in a non-nil error interface) when all is well.
func failure(err error) error {
	var list cog.BuildErrors
	if errors.As(err, &list) && len(list) == 0 {
		return nil
	}
	return err
}

func check(path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var d dashboard.Dashboard
	if err := failure(d.UnmarshalJSONStrict(raw)); err != nil {
		return fmt.Errorf("does not decode strictly: %w", err)
	}
	if err := failure(d.Validate()); err != nil {
		return fmt.Errorf("violates a schema constraint: %w", err)
	}
	return nil
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: schemacheck DASHBOARD.json...")
		os.Exit(2)
	}
	// Panel options and queries are decoded by their plugin's schema only when the
	// plugin is registered; unregistered, they would pass as free-form JSON.
	plugins.RegisterDefaultPlugins()
	failed := false
	for _, path := range os.Args[1:] {
		if err := check(path); err != nil {
			fmt.Printf("FAIL %s: %v\n", path, err)
			failed = true
		} else {
			fmt.Printf("ok %s\n", path)
		}
	}
	if failed {
		os.Exit(1)
	}
}
