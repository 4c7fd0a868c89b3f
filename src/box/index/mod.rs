pub mod bptree;
