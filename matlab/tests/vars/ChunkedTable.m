classdef ChunkedTable < scistack.BaseVariable
end
