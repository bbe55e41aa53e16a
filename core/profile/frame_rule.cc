#include "core/profile/frame_rule.h"

#include <cstddef>
#include <cstring>

namespace bitslab::profile {

namespace {

// DWARF register numbers on x86-64, and the return address's column.
constexpr uint64_t kRbp = 6;
constexpr uint64_t kRsp = 7;
constexpr uint64_t kReturnAddress = 16;

// libgcc's struct dwarf_eh_bases, which _Unwind_Find_FDE fills: func is the FDE's first address.
struct EhBases {
  void* tbase;
  void* dbase;
  void* func;
};

// A reader over one table entry's bytes; `failed` once it would read past `end`.
struct Reader {
  const uint8_t* at;
  const uint8_t* end;
  bool failed = false;

  bool more() const { return !failed && at < end; }
  uint8_t u8() {
    if (at >= end) return fail();
    return *at++;
  }
  template <typename T>
  T fixed() {
    T v{};
    if (end - at < static_cast<ptrdiff_t>(sizeof v)) return fail();
    memcpy(&v, at, sizeof v);
    at += sizeof v;
    return v;
  }
  uint64_t uleb() {
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
      const uint8_t b = u8();
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      if ((b & 0x80) == 0) return v;
    }
    return fail();
  }
  int64_t sleb() {  // built unsigned: no shift or negation can overflow
    uint64_t v = 0;
    unsigned shift = 0;
    uint8_t b;
    do {
      b = u8();
      v |= static_cast<uint64_t>(b & 0x7f) << shift;
      shift += 7;
    } while ((b & 0x80) != 0 && shift < 64);
    if (shift < 64 && (b & 0x40) != 0) v |= ~uint64_t{0} << shift;  // the sign, extended
    return static_cast<int64_t>(v);
  }
  void skip(uint64_t n) {
    if (static_cast<uint64_t>(end - at) < n) {
      fail();
      return;
    }
    at += n;
  }
  // Skips a pointer of DW_EH_PE `encoding` (its low four bits say its size). false when the
  // encoding is one this reader does not know.
  bool skip_pointer(uint8_t encoding) {
    if (encoding == 0xff) return true;            // DW_EH_PE_omit
    if ((encoding & 0x70) == 0x50) return false;  // DW_EH_PE_aligned: not followed
    switch (encoding & 0x0f) {
      case 0x01:  // uleb128
        uleb();
        return true;
      case 0x09:  // sleb128
        sleb();
        return true;
      default: {  // the fixed sizes: absptr, udata2/4/8, sdata2/4/8 (0 for the others)
        static constexpr uint8_t kBytes[16] = {8, 0, 2, 4, 8, 0, 0, 0, 0, 0, 2, 4, 8, 0, 0, 0};
        if (kBytes[encoding & 0x0f] == 0) return false;
        skip(kBytes[encoding & 0x0f]);
        return true;
      }
    }
  }
  uint8_t fail() {
    failed = true;
    at = end;
    return 0;
  }
};

// How a register is recovered in the caller, for the two the walk follows.
struct RegisterRule {
  enum How : uint8_t { kSame, kAtCfaOffset, kUndefined, kOther } how = kSame;
  int64_t offset = 0;
};

// The row of the CFA table that the interpreter builds.
struct Row {
  uint64_t cfa_register = kRsp;
  int64_t cfa_offset = 8;
  bool cfa_unsupported = false;  // an expression, or a register the walk does not track
  RegisterRule rbp, ra;
};

// Interprets call-frame instructions into `row` until the location passes `pc`. `initial` is
// the CIE's row, which DW_CFA_restore returns a register to. false when the instructions are
// malformed (the row is then not to be trusted).
class Interpreter {
 public:
  Interpreter(uint64_t code_align, int64_t data_align, uint64_t ra_column)
      : code_align_(code_align), data_align_(data_align), ra_column_(ra_column) {}

  bool run(Reader r, uintptr_t location, uintptr_t pc, Row& row, const Row& initial) {
    location_ = location;
    while (r.more() && location_ <= pc) {
      const uint8_t op = r.u8();
      const uint8_t low = op & 0x3f;
      switch (op >> 6) {
        case 1:  // DW_CFA_advance_loc
          location_ += low * code_align_;
          continue;
        case 2:  // DW_CFA_offset
          set_offset(row, low, static_cast<int64_t>(r.uleb()) * data_align_);
          continue;
        case 3:  // DW_CFA_restore
          restore(row, initial, low);
          continue;
        default:
          break;
      }
      switch (op) {
        case 0x00:  // DW_CFA_nop
          break;
        case 0x02:  // DW_CFA_advance_loc1
          location_ += r.u8() * code_align_;
          break;
        case 0x03:  // DW_CFA_advance_loc2
          location_ += r.fixed<uint16_t>() * code_align_;
          break;
        case 0x04:  // DW_CFA_advance_loc4
          location_ += r.fixed<uint32_t>() * code_align_;
          break;
        case 0x05: {  // DW_CFA_offset_extended
          const uint64_t reg = r.uleb();
          set_offset(row, reg, static_cast<int64_t>(r.uleb()) * data_align_);
          break;
        }
        case 0x06:  // DW_CFA_restore_extended
          restore(row, initial, r.uleb());
          break;
        case 0x07:  // DW_CFA_undefined
          set(row, r.uleb(), RegisterRule::kUndefined);
          break;
        case 0x08:  // DW_CFA_same_value
          set(row, r.uleb(), RegisterRule::kSame);
          break;
        case 0x09:  // DW_CFA_register: kept in another register
          set(row, r.uleb(), RegisterRule::kOther);
          r.uleb();
          break;
        case 0x0a:  // DW_CFA_remember_state
          if (depth_ == kMaxStates) return false;
          saved_[depth_++] = row;
          break;
        case 0x0b:  // DW_CFA_restore_state: every rule, the CFA's too (as libgcc)
          if (depth_ == 0) return false;
          row = saved_[--depth_];
          break;
        case 0x0c:  // DW_CFA_def_cfa
          row.cfa_register = r.uleb();
          row.cfa_offset = static_cast<int64_t>(r.uleb());
          row.cfa_unsupported = false;
          break;
        case 0x0d:  // DW_CFA_def_cfa_register
          row.cfa_register = r.uleb();
          row.cfa_unsupported = false;
          break;
        case 0x0e:  // DW_CFA_def_cfa_offset
          row.cfa_offset = static_cast<int64_t>(r.uleb());
          break;
        case 0x0f:  // DW_CFA_def_cfa_expression
          row.cfa_unsupported = true;
          r.skip(r.uleb());
          break;
        case 0x10:  // DW_CFA_expression
        case 0x16:  // DW_CFA_val_expression
          set(row, r.uleb(), RegisterRule::kOther);
          r.skip(r.uleb());
          break;
        case 0x11: {  // DW_CFA_offset_extended_sf
          const uint64_t reg = r.uleb();
          set_offset(row, reg, r.sleb() * data_align_);
          break;
        }
        case 0x12:  // DW_CFA_def_cfa_sf
          row.cfa_register = r.uleb();
          row.cfa_offset = r.sleb() * data_align_;
          row.cfa_unsupported = false;
          break;
        case 0x13:  // DW_CFA_def_cfa_offset_sf
          row.cfa_offset = r.sleb() * data_align_;
          break;
        case 0x14:  // DW_CFA_val_offset
        case 0x15:  // DW_CFA_val_offset_sf
          set(row, r.uleb(), RegisterRule::kOther);
          op == 0x14 ? static_cast<void>(r.uleb()) : static_cast<void>(r.sleb());
          break;
        case 0x2e:  // DW_CFA_GNU_args_size: nothing to the walk
          r.uleb();
          break;
        case 0x2f: {  // DW_CFA_GNU_negative_offset_extended
          const uint64_t reg = r.uleb();
          set_offset(row, reg, -static_cast<int64_t>(r.uleb()) * data_align_);
          break;
        }
        default:  // DW_CFA_set_loc, and anything newer: not followed
          return false;
      }
    }
    return !r.failed;
  }

 private:
  static constexpr int kMaxStates = 8;

  RegisterRule* tracked(Row& row, uint64_t reg) const {
    if (reg == kRbp) return &row.rbp;
    if (reg == ra_column_) return &row.ra;
    return nullptr;  // other registers: the walk needs none of them
  }
  void set(Row& row, uint64_t reg, RegisterRule::How how) {
    if (RegisterRule* rule = tracked(row, reg)) *rule = RegisterRule{how, 0};
  }
  void set_offset(Row& row, uint64_t reg, int64_t offset) {
    if (RegisterRule* rule = tracked(row, reg)) *rule = RegisterRule{RegisterRule::kAtCfaOffset, offset};
  }
  void restore(Row& row, const Row& initial, uint64_t reg) {
    if (reg == kRbp) row.rbp = initial.rbp;
    if (reg == ra_column_) row.ra = initial.ra;
  }

  uint64_t code_align_;
  int64_t data_align_;
  uint64_t ra_column_;
  uintptr_t location_ = 0;
  Row saved_[kMaxStates];
  int depth_ = 0;
};

FrameRule unsupported() {
  FrameRule r;
  r.kind = FrameRule::kUnsupported;
  return r;
}

bool fits_int32(int64_t v) { return v >= INT32_MIN && v <= INT32_MAX; }

}  // namespace

FrameRule read_frame_rule(uintptr_t pc, FindFdeFn find_fde) {
  EhBases bases{};
  const auto* fde = static_cast<const uint8_t*>(find_fde(reinterpret_cast<void*>(pc), &bases));
  if (fde == nullptr) {  // code without a table entry (JIT code, or no caller): libgcc stops too
    FrameRule end;
    end.kind = FrameRule::kOutermost;
    return end;
  }
  // The FDE: its length (32-bit form only), then the distance back to its CIE.
  uint32_t fde_length, cie_distance;
  memcpy(&fde_length, fde, 4);
  memcpy(&cie_distance, fde + 4, 4);
  if (fde_length == 0xffffffff || fde_length < 4) return unsupported();
  const uint8_t* cie = fde + 4 - cie_distance;
  uint32_t cie_length;
  memcpy(&cie_length, cie, 4);
  if (cie_length == 0xffffffff || cie_length < 4) return unsupported();

  // The CIE: id, version, augmentation, alignment factors, return address column, augmentation
  // data (its pointer encodings), then the initial instructions.
  Reader c{cie + 8, cie + 4 + cie_length};
  const uint8_t version = c.u8();
  const char* augmentation = reinterpret_cast<const char*>(c.at);
  const size_t augmentation_length = strnlen(augmentation, static_cast<size_t>(c.end - c.at));
  c.skip(augmentation_length + 1);
  const uint64_t code_align = c.uleb();
  const int64_t data_align = c.sleb();
  const uint64_t ra_column = version == 1 ? c.u8() : c.uleb();
  uint8_t fde_encoding = 0;  // absptr unless 'R' says otherwise
  bool has_augmentation_data = false;
  if (augmentation[0] == 'z') {
    has_augmentation_data = true;
    const uint64_t data_length = c.uleb();
    const uint8_t* data_end = c.at + data_length;
    for (size_t i = 1; i < augmentation_length && !c.failed; ++i) {
      switch (augmentation[i]) {
        case 'R':
          fde_encoding = c.u8();
          break;
        case 'L':
          c.u8();
          break;
        case 'P':
          if (!c.skip_pointer(c.u8())) return unsupported();
          break;
        default:
          return unsupported();  // 'S' (a signal frame), and anything unknown
      }
    }
    if (c.failed || data_end > c.end) return unsupported();
    c.at = data_end;
  } else if (augmentation[0] != '\0') {
    return unsupported();
  }
  if (c.failed || ra_column != kReturnAddress) return unsupported();

  // The FDE's own fields: its address range (bases.func is where it starts), augmentation data.
  Reader f{fde + 8, fde + 4 + fde_length};
  if (!f.skip_pointer(fde_encoding) || !f.skip_pointer(fde_encoding & 0x0f)) return unsupported();
  if (has_augmentation_data) f.skip(f.uleb());
  if (f.failed) return unsupported();

  Row initial;
  Interpreter cie_program(code_align, data_align, ra_column);
  const auto start = reinterpret_cast<uintptr_t>(bases.func);
  if (!cie_program.run(c, start, pc, initial, initial)) return unsupported();
  Row row = initial;
  Interpreter fde_program(code_align, data_align, ra_column);
  if (!fde_program.run(f, start, pc, row, initial)) return unsupported();

  FrameRule rule;
  if (row.ra.how == RegisterRule::kUndefined) {  // the outermost frame: _start, clone's child
    rule.kind = FrameRule::kOutermost;
    return rule;
  }
  const bool cfa_ok = !row.cfa_unsupported && (row.cfa_register == kRsp || row.cfa_register == kRbp) &&
                      fits_int32(row.cfa_offset);
  const bool ra_ok = row.ra.how == RegisterRule::kAtCfaOffset && row.ra.offset == -8;
  const bool rbp_ok =
      row.rbp.how == RegisterRule::kSame || (row.rbp.how == RegisterRule::kAtCfaOffset &&
                                             row.rbp.offset >= INT16_MIN && row.rbp.offset <= INT16_MAX);
  if (!cfa_ok || !ra_ok || !rbp_ok) return unsupported();
  rule.kind = FrameRule::kStep;
  rule.cfa_from_rbp = row.cfa_register == kRbp;
  rule.cfa_offset = static_cast<int32_t>(row.cfa_offset);
  rule.rbp_saved = row.rbp.how == RegisterRule::kAtCfaOffset;
  rule.rbp_offset = static_cast<int32_t>(row.rbp.offset);
  return rule;
}

}  // namespace bitslab::profile
