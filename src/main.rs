fn main() {
    let dir = std::env::temp_dir().join("sfwd-link-check");
    let db = rocksdb::DB::open_default(&dir).unwrap();
    db.put(b"k", b"v").unwrap();
    println!("{:?}", db.get(b"k").unwrap());
}
