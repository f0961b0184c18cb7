package airlock_test

import (
	"context"
	"fmt"

	m "github.com/airlock/airlock/sdk/go"
)

// WithImage takes a local root file system; a registry image is a clear error.
func ExampleWithImage() {
	_, err := m.CreateSandbox(context.Background(), "worker", m.WithImage("python:3.12"))
	fmt.Println(err != nil)
	// Output: true
}
