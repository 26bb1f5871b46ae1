function tf = is_zstd_file(path)
%IS_ZSTD_FILE True when the file starts with the zstd frame magic 28 B5 2F FD (an object
%   header always starts with an ASCII letter); reads 4 bytes only.
magic = scistack.internal.first_bytes(path, 4);
tf = numel(magic) == 4 && isequal(magic, uint8([40, 181, 47, 253]));
end
