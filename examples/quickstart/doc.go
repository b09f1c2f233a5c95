// Command quickstart runs two cache instances in one process over the
// in-process backplane and shows an update on one evicting the entry on the
// other. Swap memtransport for redistransport or natstransport to run the
// instances as separate processes.
package main
