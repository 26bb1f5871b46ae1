function t = json_string(s)
%JSON_STRING A char row as a JSON string literal, ASCII only, exactly as Python's
%   json.dumps(ensure_ascii=True) writes it: \" \\ \b \f \n \r \t, other characters
%   outside 0x20-0x7e as \u00XX (lowercase hex), above U+FFFF as a surrogate pair.
u = double(s);
if all(u >= 32 & u <= 126 & u ~= 34 & u ~= 92)
    t = ['"', s, '"'];
    return
end
cp = scistack.internal.char_to_cp(s);
parts = cell(1, numel(cp));
for k = 1:numel(cp)
    c = cp(k);
    if c >= 32 && c <= 126 && c ~= 34 && c ~= 92
        parts{k} = char(c);
    else
        switch c
            case 34
                parts{k} = '\"';
            case 92
                parts{k} = '\\';
            case 8
                parts{k} = '\b';
            case 12
                parts{k} = '\f';
            case 10
                parts{k} = '\n';
            case 13
                parts{k} = '\r';
            case 9
                parts{k} = '\t';
            otherwise
                if c >= 65536
                    v = c - 65536;
                    parts{k} = sprintf('\\u%04x\\u%04x', 55296 + floor(v / 1024), ...
                        56320 + mod(v, 1024));
                else
                    parts{k} = sprintf('\\u%04x', c);
                end
        end
    end
end
t = ['"', parts{:}, '"'];
end
