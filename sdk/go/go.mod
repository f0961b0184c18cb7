module github.com/airlock/airlock/sdk/go

go 1.19
