classdef BigRaw < scistack.BaseVariable
end
