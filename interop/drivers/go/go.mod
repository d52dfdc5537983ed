module github.com/honker/honker/interop/drivers/go

go 1.19

require (
	github.com/honker/honker/bindings/go v0.0.0
	github.com/mattn/go-sqlite3 v1.14.16
)

replace (
	github.com/honker/honker/bindings/go => ../../../bindings/go
	github.com/mattn/go-sqlite3 => /usr/share/gocode/src/github.com/mattn/go-sqlite3
)
