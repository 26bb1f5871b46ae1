function s = cp_to_char(cp)
%CP_TO_CHAR Text (char row) of Unicode code points: UTF-8 bytes in Octave (whose char is
%   8-bit), UTF-16 code units in MATLAB (characters above U+FFFF become surrogate pairs).
cp = double(cp(:)');
if all(cp < 128)
    s = char(cp);
elseif scistack.internal.is_octave()
    s = char(scistack.internal.utf8_encode(cp));
else
    big = find(cp >= 65536);
    if isempty(big)
        s = char(cp);
        return
    end
    units = num2cell(cp);
    for k = big
        v = cp(k) - 65536;
        units{k} = [55296 + floor(v / 1024), 56320 + mod(v, 1024)];
    end
    s = char([units{:}]);
end
end
