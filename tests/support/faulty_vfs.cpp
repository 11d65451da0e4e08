#include "support/faulty_vfs.hpp"

#include <sqlite3.h>

#include <stdexcept>

namespace gateway::test {

// A file of the faulty VFS: the real VFS's file follows it in the same allocation.
struct FaultyVfs::File {
    sqlite3_file base;
    sqlite3_file* real;
    FaultyVfs* owner;
    int generation;
};

namespace {

FaultyVfs::File* as_file(sqlite3_file* f) {
    return reinterpret_cast<FaultyVfs::File*>(f);
}
const sqlite3_io_methods& real_methods(sqlite3_file* f) {
    return *as_file(f)->real->pMethods;
}
sqlite3_file* real_file(sqlite3_file* f) {
    return as_file(f)->real;
}
bool broken(sqlite3_file* f) {
    return as_file(f)->owner->broken(*as_file(f));
}

int x_close(sqlite3_file* f) {
    return real_methods(f).xClose(real_file(f));
}
int x_read(sqlite3_file* f, void* buf, int n, sqlite3_int64 offset) {
    if (broken(f)) return SQLITE_IOERR_READ;
    return real_methods(f).xRead(real_file(f), buf, n, offset);
}
int x_write(sqlite3_file* f, const void* buf, int n, sqlite3_int64 offset) {
    if (broken(f)) return SQLITE_IOERR_WRITE;
    if (const int rc = as_file(f)->owner->write_fault()) return rc;
    return real_methods(f).xWrite(real_file(f), buf, n, offset);
}
int x_truncate(sqlite3_file* f, sqlite3_int64 size) {
    if (broken(f)) return SQLITE_IOERR_TRUNCATE;
    return real_methods(f).xTruncate(real_file(f), size);
}
int x_sync(sqlite3_file* f, int flags) {
    if (broken(f)) return SQLITE_IOERR_FSYNC;
    if (const int rc = as_file(f)->owner->sync_fault()) return rc;
    return real_methods(f).xSync(real_file(f), flags);
}
int x_file_size(sqlite3_file* f, sqlite3_int64* size) {
    if (broken(f)) return SQLITE_IOERR_FSTAT;
    return real_methods(f).xFileSize(real_file(f), size);
}
int x_lock(sqlite3_file* f, int level) {
    return real_methods(f).xLock(real_file(f), level);
}
int x_unlock(sqlite3_file* f, int level) {
    return real_methods(f).xUnlock(real_file(f), level);
}
int x_check_reserved_lock(sqlite3_file* f, int* out) {
    return real_methods(f).xCheckReservedLock(real_file(f), out);
}
int x_file_control(sqlite3_file* f, int op, void* arg) {
    return real_methods(f).xFileControl(real_file(f), op, arg);
}
int x_sector_size(sqlite3_file* f) {
    return real_methods(f).xSectorSize(real_file(f));
}
int x_device_characteristics(sqlite3_file* f) {
    return real_methods(f).xDeviceCharacteristics(real_file(f));
}
int x_shm_map(sqlite3_file* f, int region, int size, int extend, void volatile** out) {
    if (real_methods(f).iVersion < 2) return SQLITE_IOERR_SHMMAP;
    return real_methods(f).xShmMap(real_file(f), region, size, extend, out);
}
int x_shm_lock(sqlite3_file* f, int offset, int n, int flags) {
    if (real_methods(f).iVersion < 2) return SQLITE_IOERR_SHMLOCK;
    return real_methods(f).xShmLock(real_file(f), offset, n, flags);
}
void x_shm_barrier(sqlite3_file* f) {
    if (real_methods(f).iVersion >= 2) real_methods(f).xShmBarrier(real_file(f));
}
int x_shm_unmap(sqlite3_file* f, int delete_flag) {
    if (real_methods(f).iVersion < 2) return SQLITE_OK;
    return real_methods(f).xShmUnmap(real_file(f), delete_flag);
}
int x_fetch(sqlite3_file* f, sqlite3_int64 offset, int n, void** out) {
    *out = nullptr;
    if (real_methods(f).iVersion < 3 || broken(f)) return SQLITE_OK;  // no mapping: reads instead
    return real_methods(f).xFetch(real_file(f), offset, n, out);
}
int x_unfetch(sqlite3_file* f, sqlite3_int64 offset, void* p) {
    if (real_methods(f).iVersion < 3) return SQLITE_OK;
    return real_methods(f).xUnfetch(real_file(f), offset, p);
}

const sqlite3_io_methods kMethods = {
    3,
    x_close,
    x_read,
    x_write,
    x_truncate,
    x_sync,
    x_file_size,
    x_lock,
    x_unlock,
    x_check_reserved_lock,
    x_file_control,
    x_sector_size,
    x_device_characteristics,
    x_shm_map,
    x_shm_lock,
    x_shm_barrier,
    x_shm_unmap,
    x_fetch,
    x_unfetch,
};

FaultyVfs* owner_of(sqlite3_vfs* vfs) {
    return static_cast<FaultyVfs*>(vfs->pAppData);
}
sqlite3_vfs* real_of(sqlite3_vfs* vfs);

int v_open(sqlite3_vfs* vfs, const char* name, sqlite3_file* f, int flags, int* out_flags) {
    auto* file = as_file(f);
    file->owner = owner_of(vfs);
    file->generation = file->owner->generation();
    file->real = reinterpret_cast<sqlite3_file*>(file + 1);
    sqlite3_vfs* real = real_of(vfs);
    const int rc = real->xOpen(real, name, file->real, flags, out_flags);
    file->base.pMethods = file->real->pMethods ? &kMethods : nullptr;
    if (rc == SQLITE_OK) file->owner->count_open();
    return rc;
}
int v_delete(sqlite3_vfs* vfs, const char* name, int sync_dir) {
    return real_of(vfs)->xDelete(real_of(vfs), name, sync_dir);
}
int v_access(sqlite3_vfs* vfs, const char* name, int flags, int* out) {
    return real_of(vfs)->xAccess(real_of(vfs), name, flags, out);
}
int v_full_pathname(sqlite3_vfs* vfs, const char* name, int n, char* out) {
    return real_of(vfs)->xFullPathname(real_of(vfs), name, n, out);
}
void* v_dl_open(sqlite3_vfs* vfs, const char* name) {
    return real_of(vfs)->xDlOpen(real_of(vfs), name);
}
void v_dl_error(sqlite3_vfs* vfs, int n, char* out) {
    real_of(vfs)->xDlError(real_of(vfs), n, out);
}
void (*v_dl_sym(sqlite3_vfs* vfs, void* handle, const char* symbol))(void) {
    return real_of(vfs)->xDlSym(real_of(vfs), handle, symbol);
}
void v_dl_close(sqlite3_vfs* vfs, void* handle) {
    real_of(vfs)->xDlClose(real_of(vfs), handle);
}
int v_randomness(sqlite3_vfs* vfs, int n, char* out) {
    return real_of(vfs)->xRandomness(real_of(vfs), n, out);
}
int v_sleep(sqlite3_vfs* vfs, int us) {
    return real_of(vfs)->xSleep(real_of(vfs), us);
}
int v_current_time(sqlite3_vfs* vfs, double* out) {
    return real_of(vfs)->xCurrentTime(real_of(vfs), out);
}
int v_get_last_error(sqlite3_vfs* vfs, int n, char* out) {
    return real_of(vfs)->xGetLastError(real_of(vfs), n, out);
}
int v_current_time_int64(sqlite3_vfs* vfs, sqlite3_int64* out) {
    return real_of(vfs)->xCurrentTimeInt64(real_of(vfs), out);
}

// The VFS and the real one it wraps (one faulty VFS at a time).
sqlite3_vfs g_vfs{};
sqlite3_vfs* g_real = nullptr;

sqlite3_vfs* real_of(sqlite3_vfs*) {
    return g_real;
}

}  // namespace

FaultyVfs::FaultyVfs() {
    if (g_real) throw std::logic_error("one FaultyVfs at a time");
    real_ = sqlite3_vfs_find(nullptr);
    if (!real_ || real_->iVersion < 2) throw std::runtime_error("no usable default SQLite VFS");
    g_real = real_;
    g_vfs = sqlite3_vfs{};
    g_vfs.iVersion = 2;
    g_vfs.szOsFile = static_cast<int>(sizeof(File)) + real_->szOsFile;
    g_vfs.mxPathname = real_->mxPathname;
    g_vfs.zName = "gateway-faulty";
    g_vfs.pAppData = this;
    g_vfs.xOpen = v_open;
    g_vfs.xDelete = v_delete;
    g_vfs.xAccess = v_access;
    g_vfs.xFullPathname = v_full_pathname;
    g_vfs.xDlOpen = v_dl_open;
    g_vfs.xDlError = v_dl_error;
    g_vfs.xDlSym = v_dl_sym;
    g_vfs.xDlClose = v_dl_close;
    g_vfs.xRandomness = v_randomness;
    g_vfs.xSleep = v_sleep;
    g_vfs.xCurrentTime = v_current_time;
    g_vfs.xGetLastError = v_get_last_error;
    g_vfs.xCurrentTimeInt64 = v_current_time_int64;
    sqlite3_vfs_register(&g_vfs, 1);
}

FaultyVfs::~FaultyVfs() {
    stall_syncs(false);
    sqlite3_vfs_unregister(&g_vfs);
    sqlite3_vfs_register(real_, 1);
    g_real = nullptr;
}

void FaultyVfs::stall_syncs(bool on) {
    {
        std::lock_guard lock(mu_);
        stall_ = on;
    }
    cv_.notify_all();
}

bool FaultyVfs::wait_stalled(std::chrono::milliseconds timeout) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return stalled_ > 0; });
}

int FaultyVfs::write_fault() const {
    return fail_writes_ ? SQLITE_FULL : SQLITE_OK;
}

int FaultyVfs::sync_fault() {
    {
        std::unique_lock lock(mu_);
        if (stall_) {
            ++stalled_;
            cv_.notify_all();
            cv_.wait(lock, [&] { return !stall_; });
            --stalled_;
        }
    }
    int left = fail_syncs_.load();
    while (left > 0 && !fail_syncs_.compare_exchange_weak(left, left - 1)) {
    }
    return left > 0 ? SQLITE_IOERR_FSYNC : SQLITE_OK;
}

bool FaultyVfs::broken(const File& f) const {
    return f.generation != generation_;
}

}  // namespace gateway::test
